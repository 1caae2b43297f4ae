"""The scheduling policy on exact durations: a scenario replayed through the real ``Planner``.

No processes, no clocks: a discrete-event loop plays the Celery dispatcher's poll
(``CeleryDispatcher.claim_ready``: the ready list in order, ``routing.room`` with its broker
window, ``Planner.choose`` and ``Planner.sent``) at t = 0 and at every task's end or bead's
arrival, and each host's worker (its slots take queued tasks most urgent first, then in the
order sent). A task takes exactly its service time over the host's speed for its kind; each
finished task moves the estimates (``MemoryEstimates``) as a reconcile pass does. So the
makespan is the policy's own, without Celery's cost per task or a busy machine's timing, and
a change to ``scheduling.py`` or ``dispatch/plan.py`` can be judged in a second::

    .venv/bin/python bench/replay.py [SCENARIO ...] [--trace]

Default scenarios: ``skewed``, ``overflow_20_20``, ``mixed50_overflow``. ``--trace`` prints every
send and each host's tasks. (Figures quoted in ARCHITECTURE.md, 2026-12-04: ``skewed``
70.0 s, 72.9 s with ``scheduling.py`` and ``estimates.py`` as of e489779; ``overflow_20_20``
67.9 s and ``mixed50_overflow`` 120.8 s with either.)
"""

from __future__ import annotations

import argparse
import heapq
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from yggcelery import routing
from yggcelery.beads import Issue
from yggcelery.bench.scenarios import BenchTask, Scenario, get_scenario
from yggcelery.dispatch.plan import InFlight, Planner
from yggcelery.estimates import MemoryEstimates
from yggcelery.settings import Settings, load_settings

#: Unix time of the replay's t = 0 (any fixed value: beads' ages are measured from it).
T0 = 1_000_000.0


@dataclass(order=True)
class Sent:
    """A task in a host's queue: most urgent first, then in the order sent."""

    priority: int
    seq: int
    bead: str = field(compare=False)
    kind: str = field(compare=False)
    sent_at: float = field(compare=False)


@dataclass
class Running:
    bead: str
    kind: str
    priority: int
    start: float
    end: float


@dataclass
class Replay:
    scenario: Scenario
    settings: Settings
    trace: bool = False
    now: float = 0.0
    queued: dict[str, list[Sent]] = field(default_factory=dict)
    running: dict[str, list[Running]] = field(default_factory=dict)
    ran: dict[str, list[Running]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.estimates = MemoryEstimates(self.settings)
        self.tasks: dict[str, BenchTask] = {}
        self.arrivals = sorted(self.scenario.tasks, key=lambda t: t.arrival_s)
        self.ready: list[Issue] = []
        self.seq = itertools.count()
        for name in self.settings.hosts:
            self.queued[name], self.running[name], self.ran[name] = [], [], []

    def run(self) -> float:
        """The makespan: t = 0 to the last task's end."""
        while True:
            self.arrive()
            self.poll()
            self.start()
            ends = [r.end for rs in self.running.values() for r in rs]
            upcoming = ends + [t.arrival_s for t in self.arrivals[:1]]
            if not upcoming:
                return max(r.end for rs in self.ran.values() for r in rs)
            self.now = min(upcoming)
            self.finish()

    def arrive(self) -> None:
        while self.arrivals and self.arrivals[0].arrival_s <= self.now:
            task = self.arrivals.pop(0)
            created = datetime.fromtimestamp(T0 + task.arrival_s, tz=UTC)
            hint = 1.0 if self.scenario.hints else None
            issue = Issue(id=f"b-{task.key}", title=task.title, priority=task.priority,
                          labels=task.labels(), created_at=created,
                          metadata=task.metadata(hint_scale=hint))  # fmt: skip
            self.tasks[issue.id] = task
            self.ready.append(issue)

    def poll(self) -> None:
        """One ``claim_ready``: place the ready beads most urgent first while room lasts."""
        flights, loads = [], {name: [] for name in self.settings.hosts}
        for name in self.settings.hosts:
            for r in self.running[name]:
                flights.append(InFlight(host=name, kind=r.kind, priority=r.priority,
                                        since=T0 + r.start, running=True))  # fmt: skip
                loads[name].append(r.priority)
            for q in self.queued[name]:
                flights.append(InFlight(host=name, kind=q.kind, priority=q.priority,
                                        since=T0 + q.sent_at, running=False))  # fmt: skip
                loads[name].append(q.priority)
        ready = sorted(self.ready, key=lambda i: (i.priority, i.created_at or T0))
        planner = Planner.build(self.settings, flights=flights, ready=ready,
                                times=self.estimates.table(), now=T0 + self.now)  # fmt: skip
        sent: set[str] = set()
        for issue, priority in planner.order:
            room = routing.room(loads, priority=priority, settings=self.settings)
            if all(r <= 0 for r in room.values()):
                break
            choice, kind = planner.choose(issue, priority=priority, room=room)
            if choice is None:
                continue
            loads[choice.host].append(priority)
            planner.sent(issue, host=choice.host, kind=kind, priority=priority)
            heapq.heappush(self.queued[choice.host],
                           Sent(priority, next(self.seq), issue.id, kind, self.now))  # fmt: skip
            sent.add(issue.id)
            if self.trace:
                print(f"{self.now:7.2f} {issue.id} {kind:9} p{priority} -> {choice.host}"
                      f"{' (overflow)' if choice.overflow else ''}")  # fmt: skip
        self.ready = [i for i in self.ready if i.id not in sent]

    def start(self) -> None:
        for name, host in self.settings.hosts.items():
            while self.queued[name] and len(self.running[name]) < host.slots:
                q = heapq.heappop(self.queued[name])
                speed = self.settings.speeds_for(q.kind).get(name, 1.0)
                end = self.now + self.tasks[q.bead].service_s / speed
                self.running[name].append(Running(q.bead, q.kind, q.priority, self.now, end))

    def finish(self) -> None:
        for name in self.settings.hosts:
            done = [r for r in self.running[name] if r.end <= self.now]
            self.running[name] = [r for r in self.running[name] if r.end > self.now]
            for r in done:
                self.estimates.observe(name, r.kind, r.end - r.start)
                self.ran[name].append(r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*",
                        default=["skewed", "overflow_20_20", "mixed50_overflow"])  # fmt: skip
    parser.add_argument("--trace", action="store_true", help="every send, and each host's tasks")
    args = parser.parse_args()
    for name in args.scenarios:
        scenario = get_scenario(name)
        settings = scenario.settings_for(load_settings(None), time_scale=1.0)
        replay = Replay(scenario, settings, trace=args.trace)
        makespan = replay.run()
        print(f"{name}: {makespan:.2f} simulated s")
        if args.trace:
            for host, runs in replay.ran.items():
                spans = " ".join(
                    f"{r.start:.1f}-{r.end:.1f}" for r in sorted(runs, key=lambda r: r.start)
                )
                print(f"  {host}: {spans}")


if __name__ == "__main__":
    main()
