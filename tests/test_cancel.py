"""Cancel that stops the GPU: a bead closed by a person mid-attempt ends its model request.

Real Redis, a real ``ygg worker`` (prefork pool) and the simulator's HTTP host; the simulator's
request records say when the connection was dropped (status 499: the client went away).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from yggcelery.beads import JsonlStore
from yggcelery.cancel import cancel_bead
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.outcomes import TASK_MARKER
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread
from yggcelery.testing.waiting import wait_until

log = logging.getLogger(__name__)
HOST = "skadi-code"


def running(fleet: SimFleet, bead: str) -> dict[str, object] | None:
    return next(
        (r for r in fleet[HOST].records() if r["bead"] == bead and r["finished"] is None), None
    )


def ended(fleet: SimFleet, bead: str) -> dict[str, object] | None:
    return next(
        (r for r in fleet[HOST].records() if r["bead"] == bead and r["finished"] is not None),
        None,
    )


def test_closing_a_running_bead_aborts_its_model_request_and_writes_nothing(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """A person closes a bead while its 10-minute model call runs: the worker drops the HTTP
    request (the simulator sees the client go away, status 499), no result comment is ever
    written, and the freed slot takes the next bead."""
    fleet = sim_fleet(time_scale=0.1)  # the 600 s task would take 60 s if it were not stopped
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    meta = {"ygg": {"service_s": 600.0}}
    long = store.create("long code task", issue_type="bug", metadata=meta, actor="me").id
    local_cluster(settings, hosts=[HOST])
    dispatcher = CeleryDispatcher(settings, store)
    with DispatcherThread(dispatcher, until_idle=False) as loop:
        wait_until(lambda: running(fleet, long), timeout_s=60, what="the long request started")
        store.close(long, reason="done by hand", actor="me")
        closed_at = time.time()
        assert cancel_bead(dispatcher.ledger, long) is not None  # what `ygg beads close` does
        record = wait_until(lambda: ended(fleet, long), timeout_s=20, what="request dropped")
        log.warning("cancel: request ended %.2fs after the close", record["finished"] - closed_at)
        assert record["status"] == 499, record  # the client went away; no answer was sent
        short = store.create("next code task", issue_type="bug",
                             metadata={"ygg": {"service_s": 1.0}}, actor="me").id  # fmt: skip
        wait_until(lambda: store.get(short).status == "closed", timeout_s=60, what="next bead")
        loop.stop()
    issue = store.get(long)
    assert issue.status == "closed"
    assert not any(TASK_MARKER in (c.text or "") for c in issue.comments)
