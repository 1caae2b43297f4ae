"""Benchmark workloads: lists of beads with a kind, a priority, a service time and an arrival.

Times are *simulated* seconds (what the work would take on the real GPU); the runner scales them
by the simulator's time scale. Each bead asks the simulator for exactly its ``service_s`` (the
``X-Ygg-Service-S`` header, from ``metadata["ygg"]["service_s"]``), so a scenario's bound can be
computed before it runs.

- ``seed6`` — the seed's six issues (code generation p0 10 s, text summarisation p0 6 s,
  reasoning p1 20 s, text extraction p2 6 s, code refactor p2 10 s, general text p3 6 s);
- ``synthetic_20_20`` — 20 code + 20 text tasks of 10 s (legacy ≈ 200 s, bound 100 s);
- ``mixed50`` — 50 tasks, kinds and priorities 0..4 mixed, service 4..30 s (seeded RNG);
- ``flood`` — 30 p3 tasks (10 s) queued at once, then one p0 code task at t = 1 s.

With overflow (fenrir code at 0.7, surtr code at 0.7 and text at 0.8: :data:`SEED_OVERFLOW`):

- ``overflow_20_20`` — the 20 + 20 tasks (pinned bound 100 s, overflow bound about 62 s);
- ``mixed50_overflow`` — mixed50; ``mixed50_hinted`` and ``mixed50_shortest`` add each bead's
  service time as its hint, the latter ordering each level shortest expected first;
- ``skewed`` — 40 tasks of 10 s, 70 % of them code.

On the pinned seed fleet:

- ``starve`` — a p1 stream at 95 % of each kind's capacity for 300 s, 10 p3 and 10 p4 beads
  ready from t = 0, a p0 every 60 s; ``starve_noaging`` is the same with aging off.

A scenario's overflow speeds and scheduling settings apply to its run only
(:meth:`Scenario.settings_for`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from yggcelery.settings import HostSettings, SchedulingSettings, Settings

Order = Literal["beads", "shortest"]

#: What the seed fleet's models can do besides their own kind (issue 12's figures).
SEED_OVERFLOW: Mapping[str, Mapping[str, float]] = {
    "fenrir-chat": {"code": 0.7},
    "surtr-reasoning": {"code": 0.7, "text": 0.8},
}
#: Slots per kind on the seed fleet (surtr 2 reasoning, fenrir 3 text, skadi 2 code).
SEED_SLOTS: Mapping[str, int] = {"reasoning": 2, "text": 3, "code": 2}


@dataclass(frozen=True, kw_only=True)
class BenchTask:
    """One bead of a scenario."""

    key: str
    title: str
    kind: str
    priority: int
    service_s: float
    #: Simulated seconds after the scenario starts at which the bead is created (becomes ready).
    arrival_s: float = 0.0

    def metadata(self, *, hint_scale: float | None = None) -> dict[str, Any]:
        """The bead's metadata: the dispatchers pass ``service_s`` on to the simulator.

        With ``hint_scale`` (real seconds per simulated second) the bead also carries its
        service time as the scheduler's hint, ``expected_s``, in the dispatcher's real seconds.
        """
        ygg: dict[str, Any] = {"service_s": self.service_s, "bench_key": self.key}
        if hint_scale is not None:
            ygg["expected_s"] = self.service_s * hint_scale
        return {"ygg": ygg}

    def labels(self) -> list[str]:
        return [f"kind:{self.kind}", "bench"]


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A named workload."""

    name: str
    description: str
    tasks: tuple[BenchTask, ...]
    #: Host → overflow kind → speed, for this run only; empty: the fleet as configured.
    overflow: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    #: ``[scheduling]`` values for this run only, times in simulated seconds.
    scheduling: Mapping[str, Any] = field(default_factory=dict)
    #: Beads carry their service time as the scheduler's hint (``metadata.ygg.expected_s``).
    hints: bool = False

    @property
    def total_service_s(self) -> float:
        return sum(task.service_s for task in self.tasks)

    def settings_for(self, base: Settings, *, time_scale: float) -> Settings:
        """``base`` with this scenario's overflow and scheduling, times in real seconds.

        Settings and scenarios speak simulated seconds; the dispatchers measure real ones, so
        expected service times and ``aging_s`` are multiplied by ``time_scale``.
        """
        hosts = dict(base.hosts)
        for name, speeds in self.overflow.items():
            if name not in hosts:
                known = ", ".join(hosts)
                raise ValueError(f"scenario {self.name}: no host {name!r} (configured: {known})")
            hosts[name] = HostSettings.model_validate(
                {**hosts[name].model_dump(), "overflow": dict(speeds)}
            )
        scheduling = SchedulingSettings.model_validate(
            {**base.scheduling.model_dump(), **self.scheduling}
        )
        return base.model_copy(
            update={"hosts": hosts, "scheduling": _scaled(scheduling, time_scale)}
        )

    def __repr__(self) -> str:
        return f"<Scenario {self.name} tasks={len(self.tasks)} service={self.total_service_s:g}s>"


def _task(
    n: int, title: str, kind: str, priority: int, service_s: float, *, arrival_s: float = 0.0
) -> BenchTask:
    return BenchTask(
        key=f"t{n:02d}",
        title=title,
        kind=kind,
        priority=priority,
        service_s=service_s,
        arrival_s=arrival_s,
    )


def seed6() -> Scenario:
    """The six issues of the seed repository, with service times typical of their models."""
    rows = [
        ("Generate a REST client for the inventory API", "code", 0, 10.0),
        ("Summarise the incident report", "text", 0, 6.0),
        ("Plan the database migration", "reasoning", 1, 20.0),
        ("Extract action items from the meeting notes", "text", 2, 6.0),
        ("Refactor the config loader", "code", 2, 10.0),
        ("Answer a general question about the roadmap", "text", 3, 6.0),
    ]
    tasks = tuple(_task(i, *row) for i, row in enumerate(rows, start=1))
    return Scenario(name="seed6", description="the seed's six issues", tasks=tasks)


def synthetic_20_20() -> Scenario:
    """20 code and 20 text tasks of 10 s each, all priority 2, all ready at once."""
    tasks = [
        _task(i + 1, f"{kind} task {i // 2 + 1}", kind, 2, 10.0)
        for i, kind in enumerate(["code", "text"] * 20)
    ]
    return Scenario(
        name="synthetic_20_20", description="20 code + 20 text tasks of 10 s", tasks=tuple(tasks)
    )


def mixed50(*, seed: int = 50) -> Scenario:
    """50 tasks of mixed kinds (code 40%, text 40%, reasoning 20%) and priorities 0..4."""
    rng = random.Random(seed)
    service = {"code": (6.0, 20.0), "text": (4.0, 12.0), "reasoning": (12.0, 30.0)}
    tasks = []
    for i in range(1, 51):
        kind = rng.choices(["code", "text", "reasoning"], weights=[4, 4, 2])[0]
        low, high = service[kind]
        tasks.append(
            _task(
                i,
                f"mixed {kind} task {i}",
                kind,
                rng.randint(0, 4),
                round(rng.uniform(low, high), 1),
            )
        )
    return Scenario(name="mixed50", description="50 mixed tasks, seeded RNG", tasks=tuple(tasks))


def flood(*, backlog: int = 30, p0_arrival_s: float = 1.0) -> Scenario:
    """A backlog of p3 tasks over all kinds, then one urgent p0 code task shortly after."""
    kinds = ["code", "text", "reasoning"]
    tasks = [_task(i + 1, f"backlog task {i + 1}", kinds[i % 3], 3, 10.0) for i in range(backlog)]
    tasks.append(_task(backlog + 1, "URGENT: hotfix", "code", 0, 10.0, arrival_s=p0_arrival_s))
    return Scenario(
        name="flood",
        description=f"{backlog} p3 tasks, then a p0 at t={p0_arrival_s:g}s",
        tasks=tuple(tasks),
    )


def overflow_20_20() -> Scenario:
    """The 20 + 20 tasks with the seed's overflow speeds."""
    return Scenario(
        name="overflow_20_20",
        description="20 code + 20 text tasks of 10 s, overflow on",
        tasks=synthetic_20_20().tasks,
        overflow=SEED_OVERFLOW,
    )


def mixed50_overflow() -> Scenario:
    """mixed50 with the seed's overflow speeds; the scheduler learns service times as it runs."""
    return _mixed50_with_overflow("mixed50_overflow", hints=False, order="beads")


def mixed50_hinted() -> Scenario:
    """mixed50_overflow with each bead's service time as its hint."""
    return _mixed50_with_overflow("mixed50_hinted", hints=True, order="beads")


def mixed50_shortest() -> Scenario:
    """mixed50_hinted, each priority level shortest expected first (against mixed50_hinted)."""
    return _mixed50_with_overflow("mixed50_shortest", hints=True, order="shortest")


def _mixed50_with_overflow(name: str, *, hints: bool, order: Order) -> Scenario:
    return Scenario(
        name=name,
        description=f"50 mixed tasks, overflow on, hints {'on' if hints else 'off'}, order {order}",
        tasks=mixed50().tasks,
        overflow=SEED_OVERFLOW,
        scheduling={"order": order},
        hints=hints,
    )


def skewed(*, seed: int = 70) -> Scenario:
    """40 tasks of 10 s, 28 code (70 % of the work), 8 text, 4 reasoning, priorities 1..3."""
    rng = random.Random(seed)
    kinds = ["code"] * 28 + ["text"] * 8 + ["reasoning"] * 4
    rng.shuffle(kinds)
    tasks = tuple(
        _task(i, f"skewed {kind} task {i}", kind, rng.randint(1, 3), 10.0)
        for i, kind in enumerate(kinds, start=1)
    )
    return Scenario(
        name="skewed",
        description="40 tasks of 10 s, 70 % code, overflow on",
        tasks=tasks,
        overflow=SEED_OVERFLOW,
    )


def starve(
    *, load: float = 0.95, stream_s: float = 300.0, service_s: float = 10.0, aging: bool = True
) -> Scenario:
    """A p1 stream at ``load`` of each kind's capacity, a p3/p4 backlog, a p0 every 60 s."""
    kinds = list(SEED_SLOTS)
    rows: list[tuple[str, str, int, float]] = []
    for kind, slots in SEED_SLOTS.items():
        every_s = service_s / (slots * load)
        rows += [
            (f"stream {kind} {n}", kind, 1, round(n * every_s, 3))
            for n in range(int(stream_s / every_s) + 1)
            if n * every_s < stream_s
        ]
    rows += [(f"backlog p3 {n}", kinds[n % 3], 3, 0.0) for n in range(10)]
    rows += [(f"backlog p4 {n}", kinds[n % 3], 4, 0.0) for n in range(10)]
    rows += [
        (f"URGENT {n}", kinds[(n + 2) % 3], 0, 30.0 + 60.0 * n) for n in range(int(stream_s // 60))
    ]
    rows.sort(key=lambda row: row[3])
    tasks = tuple(
        _task(i, title, kind, priority, service_s, arrival_s=arrival)
        for i, (title, kind, priority, arrival) in enumerate(rows, start=1)
    )
    return Scenario(
        name="starve" if aging else "starve_noaging",
        description=(
            f"p1 stream at {load:.0%} for {stream_s:g}s, 10 p3 + 10 p4 waiting, a p0 every 60s"
            + ("" if aging else ", aging off")
        ),
        tasks=tasks,
        scheduling={} if aging else {"aging_s": 0.0},
    )


def starve_noaging() -> Scenario:
    """starve with aging off: the p3/p4 backlog waits behind the stream."""
    return starve(aging=False)


def _scaled(scheduling: SchedulingSettings, time_scale: float) -> SchedulingSettings:
    """``scheduling`` with its times in real seconds at ``time_scale``."""
    return scheduling.model_copy(
        update={
            "expected_s": {k: v * time_scale for k, v in scheduling.expected_s.items()},
            "default_expected_s": scheduling.default_expected_s * time_scale,
            "aging_s": scheduling.aging_s * time_scale,
        }
    )


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "seed6": seed6,
    "synthetic_20_20": synthetic_20_20,
    "mixed50": mixed50,
    "flood": flood,
    "overflow_20_20": overflow_20_20,
    "mixed50_overflow": mixed50_overflow,
    "mixed50_hinted": mixed50_hinted,
    "mixed50_shortest": mixed50_shortest,
    "skewed": skewed,
    "starve": starve,
    "starve_noaging": starve_noaging,
}
#: The scenarios of ``ygg bench --quick``.
QUICK_SCENARIOS = ("synthetic_20_20",)


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``, or a ValueError listing the known ones."""
    try:
        return SCENARIOS[name]()
    except KeyError:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})") from None
