"""Routing policy as pure functions of settings and a bead: which kind, which host, which priority.

Nothing here touches a broker or a network, so every decision is testable on its own:

- :func:`kind_of` — a ``kind:code`` label wins, then the issue type's mapping, then the default;
- :func:`candidate_hosts` — the hosts that serve a kind, in configuration order;
- :func:`pick_host` — the candidate with the most free room, skipping hosts known to be down;
- :func:`broker_priority` — Beads priority 0..4 to the broker's priority number;
- :func:`queue_names` — every queue of the cluster;
- :func:`capacity` and :func:`room` — how much more work each host may take now.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING

from yggcelery.errors import ConfigError
from yggcelery.priority import PRIORITIES, Priority
from yggcelery.settings import Settings

if TYPE_CHECKING:
    from yggcelery.beads import Issue

#: Queue of the cloud fallback's worker (``ygg worker cloud``), and its concurrency.
CLOUD_QUEUE = "ygg-cloud"
CLOUD_SLOTS = 4


def beads_priority(issue: Issue) -> Priority:
    """The bead's dispatch priority (:meth:`Priority.of`: out of range is the least urgent)."""
    return Priority.of(issue.priority)


def queue_names(settings: Settings) -> list[str]:
    """Every queue the cluster uses: one per host, the control queue, the cloud queue if any."""
    names = [*settings.hosts, settings.control_queue]
    if settings.cloud.enabled:
        names.append(CLOUD_QUEUE)
    return names


def capacity(host: str, settings: Settings, *, slots: Mapping[str, int] | None = None) -> int:
    """Tasks ``host`` (or the cloud queue) may have in the broker, queued or running, at once:
    ``inflight_per_slot`` per slot, the slots to fill now from ``slots`` where it names the
    host (the effective slots, :func:`yggcelery.capacity.live.effective_slots_by_host`), else
    the configured ones."""
    if host == CLOUD_QUEUE:
        return CLOUD_SLOTS
    configured = settings.hosts[host].slots
    count = configured if slots is None else slots.get(host, configured)
    return int(count * settings.dispatch.inflight_per_slot)


def room(
    loads: Mapping[str, Iterable[int]],
    *,
    priority: int,
    settings: Settings,
    slots: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """How many more tasks of ``priority`` each host may take, given the priorities it has in
    flight (``loads``) and the slots to fill now (``slots``, see :func:`capacity`).

    The cap counts only in-flight work at least as urgent: a p0 is sent even to a host whose
    queue is full of p3, and the broker then serves it first, at the next free slot.
    """
    return {
        host: capacity(host, settings, slots=slots) - sum(1 for p in load if p <= priority)
        for host, load in loads.items()
    }


def kind_of(issue: Issue, settings: Settings) -> str:
    """The task kind: the first ``kind:X`` label, else the issue type's kind, else the default."""
    prefix = settings.routing.label_prefix
    for label in issue.labels:
        if label.startswith(prefix) and len(label) > len(prefix):
            return label[len(prefix) :]
    return settings.routing.issue_types.get(issue.issue_type, settings.routing.default_kind)


def candidate_hosts(kind: str, settings: Settings) -> list[str]:
    """Hosts that serve ``kind``; a kind nobody serves falls back to the default kind's hosts."""
    hosts = settings.hosts_for(kind) or settings.hosts_for(settings.routing.default_kind)
    if not hosts:
        raise ConfigError(
            f"no host serves kind {kind!r} nor the default kind"
            f" {settings.routing.default_kind!r}: check [hosts.*].kinds"
        )
    return hosts


def pick_host(
    candidates: list[str],
    *,
    room: Mapping[str, int],
    down: Collection[str] = (),
) -> str | None:
    """The up candidate with the most room (ties: configuration order), or None if none has room.

    ``room`` is how many more tasks each host may take now (its broker budget minus what is
    already queued or running there).
    """
    best: str | None = None
    for name in candidates:
        if name in down or room.get(name, 0) <= 0:
            continue
        if best is None or room[name] > room[best]:
            best = name
    return best


def broker_priority(priority: int, broker_kind: str) -> int:
    """The broker's priority number for a Beads priority.

    Redis (kombu's priority_steps 0..4, level 0 consumed first) takes it as is; RabbitMQ's
    ``x-max-priority`` queues serve the *highest* number first, so it is inverted there.
    """
    level = Priority.of(priority)
    if broker_kind == "amqp":
        return PRIORITIES[-1] - level
    return int(level)


#: How every task id of a bead's attempt begins (``ygg:<bead>:<attempt>``).
TASK_ID_PREFIX = "ygg:"


def task_id(bead_id: str, attempt: int) -> str:
    """Deterministic Celery task id of one dispatch attempt: a resend reuses it."""
    return f"{task_id_prefix(bead_id)}{attempt}"


def task_id_prefix(bead_id: str) -> str:
    """The task ids of ``bead_id``'s attempts without the attempt number."""
    return f"{TASK_ID_PREFIX}{bead_id}:"


def bead_of_task(task_id_: str) -> tuple[str, int] | None:
    """The ``(bead id, attempt)`` behind a task id from :func:`task_id`, or None."""
    prefix, _, rest = task_id_.partition(":")
    bead, _, attempt = rest.rpartition(":")
    if prefix != "ygg" or not bead or not attempt.isdigit():
        return None
    return bead, int(attempt)
