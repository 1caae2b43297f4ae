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
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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

    def metadata(self) -> dict[str, Any]:
        """The bead's metadata: the dispatchers pass ``service_s`` on to the simulator."""
        return {"ygg": {"service_s": self.service_s, "bench_key": self.key}}

    def labels(self) -> list[str]:
        return [f"kind:{self.kind}", "bench"]


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A named workload."""

    name: str
    description: str
    tasks: tuple[BenchTask, ...]

    @property
    def total_service_s(self) -> float:
        return sum(task.service_s for task in self.tasks)

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


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "seed6": seed6,
    "synthetic_20_20": synthetic_20_20,
    "mixed50": mixed50,
    "flood": flood,
}
#: The scenarios of ``ygg bench --quick``.
QUICK_SCENARIOS = ("synthetic_20_20",)


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``, or a ValueError listing the known ones."""
    try:
        return SCENARIOS[name]()
    except KeyError:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})") from None
