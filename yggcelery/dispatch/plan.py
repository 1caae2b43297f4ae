"""One poll's scheduling snapshot, shared by the Celery and asyncio dispatchers.

The policy is pure (:mod:`yggcelery.scheduling`); this module turns what a dispatcher knows at
the start of a poll (the ready list, the work it has in flight, the estimates) into its inputs,
and keeps them current while the poll sends beads. The two dispatchers differ only in where
their in-flight work comes from (the ledger, or their own tasks) and how they queue it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

from yggcelery import scheduling
from yggcelery.errors import ConfigError
from yggcelery.routing import beads_priority, kind_of
from yggcelery.scheduling import Choice, HostLoad, Job, ReadyBead, ServiceTimes
from yggcelery.settings import Settings

if TYPE_CHECKING:
    from yggcelery.beads import Issue


@dataclass(frozen=True, kw_only=True)
class InFlight:
    """One task a dispatcher has sent and not seen finish."""

    host: str
    kind: str
    #: The priority it was sent at (aging included).
    priority: int
    #: When it was sent (Unix time); the oldest ``slots`` per host count as running.
    since: float
    #: Known to hold a slot (the asyncio dispatcher knows; the ledger does not).
    running: bool | None = None


def waited_s(issue: Issue, *, now: float) -> float:
    """Seconds since ``issue`` was created (Beads keeps no "ready since"; 0 when unknown)."""
    created = issue.created_at
    return max(now - created.timestamp(), 0.0) if created is not None else 0.0


def ordered(
    issues: Sequence[Issue], *, settings: Settings, times: ServiceTimes, now: float
) -> list[tuple[Issue, int]]:
    """``issues`` (Beads' order) as (issue, priority to send at), most urgent first.

    Beads' order already is priority order; it is re-sorted only when aging or
    shortest-first can change it.
    """
    policy = settings.scheduling
    if policy.aging_s <= 0 and policy.order != "shortest":
        return [(issue, int(beads_priority(issue))) for issue in issues]
    by_id = {issue.id: issue for issue in issues}
    ready = [_ready_bead(issue, settings=settings, times=times, now=now) for issue in issues]
    return [
        (by_id[bead.bead], bead.level(policy.aging_s))
        for bead in scheduling.dispatch_order(ready, policy=policy)
    ]


def promoted(issues: Iterable[Issue], *, settings: Settings, now: float) -> list[dict[str, object]]:
    """Ready beads that aging dispatches more urgently than filed (for ``ygg status``)."""
    aging_s = settings.scheduling.aging_s
    out: list[dict[str, object]] = []
    for issue in issues:
        filed = int(beads_priority(issue))
        waited = waited_s(issue, now=now)
        level = scheduling.effective_priority(filed, waited_s=waited, aging_s=aging_s)
        if level < filed:
            out.append(
                {
                    "bead": issue.id,
                    "filed": f"p{filed}",
                    "now": f"p{level}",
                    "waited_s": round(waited, 1),
                }
            )
    return out


def _ready_bead(issue: Issue, *, settings: Settings, times: ServiceTimes, now: float) -> ReadyBead:
    expected = scheduling.bead_hint_s(issue)
    if expected is None and settings.scheduling.order == "shortest":
        kind = scheduling.served_kind(kind_of(issue, settings), settings)
        hosts = settings.hosts_for(kind)
        expected = min((times.expected_s(h, kind) for h in hosts), default=0.0)
    return ReadyBead(
        bead=issue.id,
        priority=int(beads_priority(issue)),
        waited_s=waited_s(issue, now=now),
        expected_s=expected or 0.0,
    )


#: Rival groups (kind and hint) of a level looked at before a bead takes an overflow slot.
MAX_RIVALS = 16

#: Equal waiting beads of one level: (kind, hint). Equal beads make equal choices.
Group = tuple[str, float | None]


@dataclass(kw_only=True)
class Planner:
    """Where each ready bead of one poll goes (:func:`scheduling.choose_host`).

    Built from the work in flight and the ready list; :attr:`order` is the ready list in the
    order to place it (:func:`ordered`), and :meth:`sent` records each bead sent during the
    poll, so the next choice sees it queued there.
    """

    settings: Settings
    times: ServiceTimes
    jobs: dict[str, list[Job]]
    #: Ready beads not sent yet, by kind (a host whose own kinds wait takes no overflow).
    waiting: Counter[str] = field(default_factory=Counter)
    #: The ready beads, most urgent first, each with the priority to send it at.
    order: list[tuple[Issue, int]] = field(default_factory=list)
    #: Ready beads not sent yet per level, by (kind, hint) in order of first appearance: who
    #: else could use an overflow slot (:func:`scheduling.outbid`).
    groups: dict[int, Counter[Group]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        flights: Iterable[InFlight],
        ready: Iterable[Issue],
        times: ServiceTimes,
        now: float | None = None,
    ) -> Planner:
        now = time.time() if now is None else now
        by_host: dict[str, list[InFlight]] = {name: [] for name in settings.hosts}
        for flight in flights:
            if flight.host in by_host:
                by_host[flight.host].append(flight)
        jobs = {
            name: _jobs(
                sorted(items, key=lambda f: f.since),
                settings.hosts[name].slots,
                times=times,
                now=now,
            )
            for name, items in by_host.items()
        }
        ready = list(ready)
        order = ordered(ready, settings=settings, times=times, now=now)
        waiting = Counter(kind_of(issue, settings) for issue in ready)
        groups: dict[int, Counter[Group]] = {}
        for issue, level in order:
            groups.setdefault(level, Counter())[_group(issue, settings)] += 1
        return cls(
            settings=settings, times=times, jobs=jobs, waiting=waiting, order=order, groups=groups
        )

    def __repr__(self) -> str:
        in_flight, waiting = sum(map(len, self.jobs.values())), sum(self.waiting.values())
        return f"<Planner in_flight={in_flight} waiting={waiting}>"

    def choose(
        self, issue: Issue, *, priority: int, room: Mapping[str, int], down: Iterable[str] = ()
    ) -> tuple[Choice | None, str]:
        """(where ``issue`` finishes first, or None: it waits; its kind).

        An overflow slot that a waiting bead of the same level would gain more from is left
        to that bead (:func:`scheduling.outbid`): ``issue`` then waits (None).
        """
        kind, hint = group = _group(issue, self.settings)
        level = self.groups.setdefault(priority, Counter())
        self.waiting[kind] -= 1  # this bead is the one being placed, not one waiting
        level[group] -= 1
        try:
            loads = self.loads(room=room, down=set(down))
            choice = self._choose(kind, hint, priority=priority, loads=loads)
            if choice is not None and choice.overflow:
                rivals = (
                    self._choose(k, h, priority=priority, loads=loads)
                    for k, h in self._rivals(level)
                )
                if scheduling.outbid(choice, rivals):
                    return None, kind
        finally:
            self.waiting[kind] += 1
            level[group] += 1
        return choice, kind

    def _choose(
        self, kind: str, hint: float | None, *, priority: int, loads: Mapping[str, HostLoad]
    ) -> Choice | None:
        candidates = scheduling.candidates_for(
            kind, settings=self.settings, loads=loads, times=self.times, hint_s=hint
        )
        return scheduling.choose_host(candidates, priority=priority)

    @staticmethod
    def _rivals(level: Counter[Group]) -> list[Group]:
        """The first :data:`MAX_RIVALS` groups of a level with beads still waiting (the bead
        being placed has taken itself out of its own group)."""
        return list(islice((group for group, count in level.items() if count > 0), MAX_RIVALS))

    def loads(self, *, room: Mapping[str, int], down: set[str]) -> dict[str, HostLoad]:
        """Every host's :class:`HostLoad` now."""
        own = scheduling.own_waiting(+self.waiting, self.settings)
        return {
            name: HostLoad(
                name=name,
                slots=host.slots,
                jobs=tuple(self.jobs[name]),
                room=room.get(name, 0),
                up=name not in down,
                own_waiting=own[name],
            )
            for name, host in self.settings.hosts.items()
        }

    def sent(self, issue: Issue, *, host: str, kind: str, priority: int) -> None:
        """``issue`` went to ``host`` at ``priority``: queued there, no longer waiting."""
        self.waiting[kind] -= 1
        level, group = self.groups.get(priority, Counter()), _group(issue, self.settings)
        level[group] -= 1
        if level[group] <= 0:
            del level[group]  # sent beads leave the level: rival scans stay short
        if host in self.jobs:
            expected = _expected_s(
                issue, host=host, kind=kind, settings=self.settings, times=self.times
            )
            self.jobs[host].append(Job(priority=priority, expected_s=expected))


def _group(issue: Issue, settings: Settings) -> Group:
    return kind_of(issue, settings), scheduling.bead_hint_s(issue)


def _expected_s(
    issue: Issue, *, host: str, kind: str, settings: Settings, times: ServiceTimes
) -> float:
    hint = scheduling.bead_hint_s(issue)
    kind = scheduling.served_kind(kind, settings)
    if hint is None:
        return times.expected_s(host, kind)
    return hint / (settings.speeds_for(kind).get(host) or 1.0)


def _jobs(flights: Sequence[InFlight], slots: int, *, times: ServiceTimes, now: float) -> list[Job]:
    """Jobs of one host, oldest first: known running ones, else the oldest ``slots`` run."""
    known = any(f.running is not None for f in flights)
    out = []
    for index, flight in enumerate(flights):
        running = flight.running if known else index < slots
        try:
            expected = times.expected_s(flight.host, flight.kind)
        except ConfigError:
            expected = 0.0
        out.append(
            Job(
                priority=flight.priority,
                expected_s=expected,
                running_s=max(now - flight.since, 0.0) if running else None,
            )
        )
    return out
