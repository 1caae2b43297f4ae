"""Scheduling policy as pure functions: where a bead finishes first, and which ready bead goes next.

Routing (:mod:`yggcelery.routing`) says what a bead is; this module says where and when it runs,
from a snapshot the dispatcher takes once per poll. Nothing here touches a broker or a clock:

- :meth:`HostLoad.start_s` — when a new task of some priority would get a slot on a host: the
  running tasks keep their slots whatever their priority, queued ones go first only when at
  least as urgent, played out on the slots earliest-free first;
- :func:`own_waiting` — per host, the ready beads of its own kinds not yet sent: a host with
  its own work waiting takes no overflow;
- :func:`candidates_for` — every host able to run a bead's kind, with what the bead takes there
  (its own hint, else the running estimate per (host, kind), which includes the host's speed);
- :func:`choose_host` — the earliest expected finish; ties go to the kind's own hosts, and work
  overflows to another kind's host only when it finishes sooner there by more than a tie
  (:data:`TIE_FRACTION` of its service time); between equal hosts, to the one able to run the
  fewest kinds, keeping the versatile one free for work that has fewer places to go; a bead
  whose chosen host has no room now waits for it rather than take a slower one;
- :func:`outbid` — an overflow slot goes to the bead of the level that gains most from it
  (the *sufferage* rule of heterogeneous task mapping), not simply to the first in order;
- :func:`effective_priority` — aging: one level more urgent per ``aging_s`` waited, never above
  p1, so a real p0 stays the only p0;
- :func:`dispatch_order` — ready beads by effective priority; within a level Beads' own order
  or, with ``order = "shortest"``, shortest expected first.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from yggcelery.settings import SchedulingSettings, Settings

if TYPE_CHECKING:
    from yggcelery.beads import Issue

#: The most urgent level aging reaches: p0 is kept for beads filed as p0.
AGING_CEILING = 1
#: Finish times closer than this are a tie (they come from sums of float estimates).
TIE_S = 1e-6
#: Expected finishes closer than this fraction of the bead's service time are a tie too: the
#: estimates are averages of measured durations, and a difference that small is their noise
#: (two hosts whose slots free together differ by a few milliseconds), not a faster host.
TIE_FRACTION = 0.02


class ServiceTimes(Protocol):
    """Expected seconds of one task of a kind on a host (``estimates.EstimateTable`` is one)."""

    def expected_s(self, host: str, kind: str) -> float: ...


@dataclass(frozen=True, kw_only=True)
class Job:
    """One task already sent to a host: waiting in its broker queue, or running on a slot."""

    #: The priority it was sent with (its effective priority, aging included).
    priority: int
    #: Expected seconds it takes on that host.
    expected_s: float
    #: Seconds since it started on a slot; None while it waits in the queue.
    running_s: float | None = None

    @property
    def remaining_s(self) -> float:
        """Expected seconds until it frees its slot (0 once it runs past its estimate)."""
        if self.running_s is None:
            return self.expected_s
        return max(self.expected_s - self.running_s, 0.0)


@dataclass(frozen=True, kw_only=True)
class HostLoad:
    """A host as the scheduler sees it at one moment."""

    name: str
    slots: int
    jobs: tuple[Job, ...] = ()
    #: Tasks the dispatcher may still send there now (its broker window); 0: none for now.
    room: int = 1
    up: bool = True
    #: Ready beads of the host's own kinds still waiting in Beads (not sent). While any wait,
    #: the host takes no overflow: a slot it gives away is one its own work needs, and that
    #: work may have nowhere else to go (overflow is for capacity that would otherwise idle).
    own_waiting: int = 0

    @property
    def takes_overflow(self) -> bool:
        """Whether another kind's work may come here now."""
        return self.own_waiting == 0

    def __repr__(self) -> str:
        running = sum(1 for j in self.jobs if j.running_s is not None)
        queued = len(self.jobs) - running
        state = "up" if self.up else "down"
        return f"<HostLoad {self.name} {state} running={running} queued={queued} room={self.room}>"

    def start_s(self, priority: int) -> float:
        """Expected seconds until a new task at ``priority`` gets a slot here."""
        running = sorted(j.remaining_s for j in self.jobs if j.running_s is not None)
        free_at = [0.0] * max(self.slots - len(running), 0) + running[: max(self.slots, 1)]
        heapq.heapify(free_at)
        ahead = sorted(
            (j for j in self.jobs if j.running_s is None and j.priority <= priority),
            key=lambda j: j.priority,
        )
        for job in ahead:
            heapq.heappush(free_at, heapq.heappop(free_at) + job.expected_s)
        return free_at[0]


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A host able to run a bead's kind, and how long the bead would take there."""

    load: HostLoad
    #: Expected seconds of the bead on this host, its speed for the kind included.
    service_s: float
    #: The kind is one of the host's own kinds (not an overflow kind).
    primary: bool
    #: How many kinds the host can run (its own and its overflow kinds); between two equal
    #: finishes the bead goes to the host able to run fewer.
    versatility: int = 1

    def finish_s(self, priority: int) -> float:
        """Expected seconds from now until the bead would finish here."""
        return self.load.start_s(priority) + self.service_s

    @property
    def tie_s(self) -> float:
        """Finishes closer than this to this one's are a tie (:data:`TIE_FRACTION`)."""
        return max(TIE_S, TIE_FRACTION * self.service_s)


@dataclass(frozen=True, kw_only=True)
class Choice:
    """Where a bead goes, and when it is expected to finish there."""

    host: str
    finish_s: float
    #: The host runs the bead's kind as overflow, not as one of its own kinds.
    overflow: bool
    #: For an overflow: how much sooner the bead finishes here than on its own hosts (their
    #: earliest expected finish, room or not; infinite when none is up). 0 otherwise.
    gain_s: float = 0.0


def served_kind(kind: str, settings: Settings) -> str:
    """``kind``, or the default kind when no host serves it (as :func:`routing.candidate_hosts`)."""
    return kind if settings.hosts_for(kind) else settings.routing.default_kind


def own_waiting(kinds: Iterable[str], settings: Settings) -> dict[str, int]:
    """Host → how many of these waiting beads (by kind) are of its own kinds, for ``HostLoad``."""
    out = dict.fromkeys(settings.hosts, 0)
    for kind in kinds:
        for name in settings.hosts_for(served_kind(kind, settings)):
            out[name] += 1
    return out


def candidates_for(
    kind: str,
    *,
    settings: Settings,
    loads: Mapping[str, HostLoad],
    times: ServiceTimes,
    hint_s: float | None = None,
) -> list[Candidate]:
    """Every host in ``loads`` able to run ``kind``: the kind's own hosts first, then overflow.

    ``hint_s`` (a bead's ``metadata.ygg.expected_s``, on the kind's own hosts) wins over the
    running estimate, divided by the host's speed for the kind.
    """
    kind = served_kind(kind, settings)
    out = []
    for name, speed in settings.speeds_for(kind).items():
        if name not in loads:
            continue
        service_s = hint_s / speed if hint_s is not None else times.expected_s(name, kind)
        host = settings.hosts[name]
        out.append(
            Candidate(
                load=loads[name],
                service_s=service_s,
                primary=kind in host.kinds,
                versatility=len({*host.kinds, *host.overflow}),
            )
        )
    return out


def choose_host(candidates: Sequence[Candidate], *, priority: int) -> Choice | None:
    """The host where the bead finishes first, or None: it waits.

    Hosts that are down are skipped, and a host whose own work waits in Beads takes no
    overflow. Ties (:attr:`Candidate.tie_s`) go to the kind's own hosts; between equal own or
    equal overflow hosts, to the least versatile, then to configuration order. When the host
    so chosen has no room (its broker window is full), the bead waits for it (None) rather
    than taking a slower host now: room opens there as its next task finishes, and the next
    poll sends the bead.
    """
    up = [(c.finish_s(priority), c) for c in candidates if c.load.up]
    own = _earliest((f, c) for f, c in up if c.primary)
    spill = _earliest((f, c) for f, c in up if not c.primary and c.load.takes_overflow)
    own_best = own[0] if own is not None else math.inf
    if spill is not None and spill[0] < own_best - spill[1].tie_s:
        finish, candidate = spill
        if candidate.load.room <= 0:
            return None
        gain = own_best - finish
        return Choice(host=candidate.load.name, finish_s=finish, overflow=True, gain_s=gain)
    if own is None or own[1].load.room <= 0:
        return None
    return Choice(host=own[1].load.name, finish_s=own[0], overflow=False)


def outbid(choice: Choice, rivals: Iterable[Choice | None]) -> bool:
    """Whether a waiting bead of the same level would gain more from ``choice``'s overflow slot.

    Earliest-finish routing alone gives an overflow slot to the first bead in order that
    finishes sooner there. When beads of several kinds could use it (surtr can take code or
    text), the one whose own hosts are furthest behind should: the others lose little by
    waiting for their own hosts. ``rivals`` are the choices the other waiting beads of the level
    would make now (one per kind and hint: equal beads make equal choices); ties keep Beads'
    order, so a bead only yields to a strictly larger gain.
    """
    if not choice.overflow:
        return False
    return any(
        rival is not None
        and rival.overflow
        and rival.host == choice.host
        and rival.gain_s > choice.gain_s + TIE_S
        for rival in rivals
    )


def _earliest(scored: Iterable[tuple[float, Candidate]]) -> tuple[float, Candidate] | None:
    """The earliest finish; among those within a tie of it, the least versatile host, then
    the first.

    Two hosts whose slots free together are a tie whichever a few milliseconds of noise put
    first. Giving the bead to the host that can run fewer kinds keeps the versatile host for
    work that has fewer places to go: in ``skewed`` a p2 code bead tied between surtr
    (reasoning, text, code) and fenrir (text, code); on surtr it left fenrir's text to run two
    abreast and then a code bead alone at the end (73.5 s), on fenrir it did not (70.6 s).
    """
    scored = list(scored)
    if not scored:
        return None
    first = min(finish for finish, _ in scored)
    tied = [(f, c) for f, c in scored if f <= first + c.tie_s]
    return min(tied, key=lambda fc: fc[1].versatility)


def effective_priority(priority: int, *, waited_s: float, aging_s: float) -> int:
    """``priority`` raised one level per ``aging_s`` waited, never above p1; ``aging_s`` 0: off.

    A bead filed as p0 or p1 keeps its level: aging only lets p2..p4 catch up with p1.
    """
    if aging_s <= 0 or priority <= AGING_CEILING or not waited_s > 0:
        return priority
    return max(priority - int(waited_s // aging_s), AGING_CEILING)


@dataclass(frozen=True, kw_only=True)
class ReadyBead:
    """A ready bead as :func:`dispatch_order` sees it."""

    bead: str
    #: Its Beads priority, 0..4.
    priority: int
    #: Seconds since it became ready.
    waited_s: float
    #: Expected seconds on its kind's own hosts (for ``order = "shortest"``).
    expected_s: float = 0.0

    def level(self, aging_s: float) -> int:
        """The priority it is dispatched at now."""
        return effective_priority(self.priority, waited_s=self.waited_s, aging_s=aging_s)


def dispatch_order(ready: Sequence[ReadyBead], *, policy: SchedulingSettings) -> list[ReadyBead]:
    """``ready`` (in Beads' order) by effective priority, most urgent first.

    Within a level, beads aged into it come before the level's own (they have waited at least
    ``aging_s`` per level gained, most gained first); then Beads' order, or shortest expected
    first with ``order = "shortest"``. The sort is stable, so equal beads keep Beads' order.
    """

    def key(bead: ReadyBead) -> tuple[int, int, float]:
        level = bead.level(policy.aging_s)
        shortest = bead.expected_s if policy.order == "shortest" else 0.0
        return (level, level - bead.priority, shortest)

    return sorted(ready, key=key)


def bead_hint_s(issue: Issue) -> float | None:
    """The bead's own expected seconds, ``metadata.ygg.expected_s``, if a positive number."""
    meta = issue.metadata if isinstance(issue.metadata, dict) else {}
    ygg = meta.get("ygg")
    value = ygg.get("expected_s") if isinstance(ygg, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None
