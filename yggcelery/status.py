"""The cluster as an operator sees it: per host slots, active, free, queued by priority, online.

Used by ``ygg status``, the dispatcher's periodic status line, the demo's live display and the
metrics endpoint. Queue depth per priority comes from the broker's lists (Redis keeps one list per
level: ``skadi-code``, ``skadi-code:1`` .. ``skadi-code:4``); active tasks and whether a worker is
online come from one ``inspect`` broadcast (``HOST@machine`` node names map to hosts).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from celery import Celery

from yggcelery.capacity.live import capacity_rows
from yggcelery.connections import redis_for
from yggcelery.dispatch.base import HostStatus
from yggcelery.dispatch.plan import promoted
from yggcelery.estimates import EstimateTable, RedisEstimates
from yggcelery.priority import Priority
from yggcelery.queues import queued_by_priority
from yggcelery.routing import beads_priority
from yggcelery.settings import Settings

if TYPE_CHECKING:
    from yggcelery.beads import BeadsStore


def worker_view(app: Celery, *, timeout_s: float = 1.0) -> tuple[dict[str, int], set[str]]:
    """(active tasks per queue name, queue names with a worker online), from one broadcast."""
    replies: dict[str, Any] = app.control.inspect(timeout=timeout_s).active() or {}
    active: Counter[str] = Counter()
    online: set[str] = set()
    for node, tasks in replies.items():
        host = node.split("@", 1)[0]
        online.add(host)
        active[host] += len(tasks)
    return dict(active), online


def host_status(
    app: Celery,
    settings: Settings,
    *,
    timeout_s: float = 1.0,
    view: tuple[dict[str, int], set[str]] | None = None,
) -> dict[str, HostStatus]:
    """Every host's :class:`HostStatus` (the seed's ``{'skadi-code': {'active': 1, ...}}``)."""
    queued = queued_by_priority(app, settings, list(settings.hosts))
    active, online = view or worker_view(app, timeout_s=timeout_s)
    status: dict[str, HostStatus] = {}
    for name, host in settings.hosts.items():
        busy = active.get(name, 0)
        status[name] = HostStatus(
            slots=host.slots,
            active=busy,
            available_slots=max(host.slots - busy, 0),
            queued=queued[name],
            online=name in online,
        )
    return status


def ready_by_priority(store: BeadsStore, settings: Settings) -> dict[str, int]:
    """Ready issues in Beads, by priority ("p0".."p4")."""
    counts = Priority.counts()
    for issue in store.ready(sort=settings.beads.sort):
        counts[beads_priority(issue).label] += 1
    return counts


def estimate_rows(table: EstimateTable) -> list[dict[str, Any]]:
    """Expected seconds per (host, kind), and whether measured or still the configured seed."""
    return [
        {"host": r.host, "kind": r.kind, "expected_s": round(r.expected_s, 3),
         "measured": r.measured}
        for r in table.rows()
    ]  # fmt: skip


def full_status(app: Celery, settings: Settings, store: BeadsStore) -> dict[str, Any]:
    """What ``ygg status --json`` prints."""
    view = worker_view(app)
    ready = store.ready(sort=settings.beads.sort)
    return {
        "hosts": host_status(app, settings, view=view),
        "beads_ready": ready_by_priority(store, settings),
        "estimates": estimate_rows(RedisEstimates.from_settings(settings).table()),
        # Configured vs effective slots, the server's queue and GPU use, from the workers'
        # live readings (capacity/live.py).
        "capacity": capacity_rows(settings, redis_for(settings)),
        # Ready beads aging sends more urgently than filed (scheduling.effective_priority).
        "promoted": promoted(ready, settings=settings, now=time.time()),
        # The control worker's node is named "control@machine" (see `ygg worker control`).
        "control_online": "control" in view[1],
    }
