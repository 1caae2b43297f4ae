"""The yardstick: makespans no schedule can beat, with work pinned to its kind's hosts or not.

Lower bounds (DESIGN.md, "The benchmark's yardstick"); each run is reported against two:

- **overflow-aware fluid bound** (``bound_s``): the smallest T such that all the work fits on
  the hosts allowed to run it, at their speeds, no host busier than ``slots × T``. With ``W_k``
  the service seconds of kind k (at its own hosts' speed) and ``x[k,h]`` the part of it host h
  takes, a small linear program (scipy's ``linprog``, HiGHS)::

      minimise T  subject to  Σ_h x[k,h] = W_k                  for every kind k
                              Σ_k x[k,h] / speed[h,k] ≤ slots_h·T for every host h
                              x[k,h] ≥ 0, and 0 where h may not run k

- **pinned bound** (``pinned_bound_s``): the same with each kind on its own hosts only. Then the
  program's answer is ``max over sets of kinds K of (work of K / slots of the hosts serving K)``
  (with one host per kind: ``max over hosts of (its work / its slots)``), computed directly.
- **span**: no task finishes before its arrival plus its service time on the fastest host
  allowed to run it. Both bounds are at least the span.

A kind no host serves counts as the default kind, as routing sends it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from yggcelery.bench.scenarios import BenchTask
from yggcelery.settings import Settings


@dataclass(frozen=True, kw_only=True)
class HostSlots:
    """What the bounds need of a host: its slots, its own kinds, and its overflow speeds."""

    slots: int
    kinds: tuple[str, ...]
    overflow: Mapping[str, float] = field(default_factory=dict)

    def speed_for(self, kind: str, *, pinned: bool = False) -> float | None:
        """Relative speed at ``kind`` (1 for its own kinds), or None if it may not run it."""
        if kind in self.kinds:
            return 1.0
        return None if pinned else self.overflow.get(kind)


@dataclass(frozen=True, kw_only=True)
class Bounds:
    """The two bounds of one workload on one fleet, in simulated seconds."""

    #: Overflow-aware: what the fleet could do if hosts take other kinds at their speeds.
    overflow_s: float
    #: Each kind on its own hosts only (the bound before overflow; equal on a pinned fleet).
    pinned_s: float

    def figures(self, makespan_s: float) -> dict[str, float | None]:
        """The report's fields: both bounds and a run's ratio to each (1.0 = optimal)."""
        return {
            "bound_s": round(self.overflow_s, 3),
            "ratio_to_bound": _ratio(self.overflow_s, makespan_s),
            "pinned_bound_s": round(self.pinned_s, 3),
            "ratio_to_pinned_bound": _ratio(self.pinned_s, makespan_s),
        }


def hosts_of(settings: Settings) -> dict[str, HostSlots]:
    """The configured hosts as the bounds see them."""
    return {
        name: HostSlots(slots=h.slots, kinds=h.kinds, overflow=dict(h.overflow))
        for name, h in settings.hosts.items()
    }


def work_by_kind(
    tasks: Iterable[BenchTask], hosts: Mapping[str, HostSlots], *, default_kind: str = "text"
) -> dict[str, float]:
    """Service seconds per kind, unserved kinds counted as ``default_kind``."""
    out: dict[str, float] = {}
    for task in tasks:
        kind = task.kind if _serving(task.kind, hosts) else default_kind
        out[kind] = out.get(kind, 0.0) + task.service_s
    return out


def fluid_bound_s(
    tasks: Sequence[BenchTask], hosts: Mapping[str, HostSlots], *, default_kind: str = "text"
) -> float:
    """The smallest T at which all work fits on the hosts allowed to run it (the program above)."""
    # scipy is the bench extra's, and slow to import: only `ygg bench` should pay for it.
    from scipy.optimize import linprog

    work = work_by_kind(tasks, hosts, default_kind=default_kind)
    pairs = [(k, h) for k in work for h in hosts if hosts[h].speed_for(k) is not None]
    if not pairs:
        return 0.0
    names = list(hosts)
    # Columns: x[k,h] for each pair, then T. Rows: one equality per kind, one limit per host.
    a_eq = [[1.0 if k == kind else 0.0 for k, _ in pairs] + [0.0] for kind in work]
    a_ub = [
        [1.0 / _speed(hosts[h], k) if h == name else 0.0 for k, h in pairs]
        + [-float(hosts[name].slots)]
        for name in names
    ]
    result: Any = linprog(
        c=[0.0] * len(pairs) + [1.0],
        A_ub=a_ub,
        b_ub=[0.0] * len(names),
        A_eq=a_eq,
        b_eq=list(work.values()),
        bounds=[(0.0, None)] * (len(pairs) + 1),
        method="highs",
    )
    if not result.success:
        raise ValueError(f"the fluid bound has no solution: {result.message}")
    return float(result.x[-1])


def work_bound_s(
    tasks: Sequence[BenchTask], hosts: Mapping[str, HostSlots], *, default_kind: str = "text"
) -> float:
    """The pinned work bound: the largest ``service of K / slots serving K`` over every set K."""
    per_kind = work_by_kind(tasks, hosts, default_kind=default_kind)
    best = 0.0
    kinds = sorted(per_kind)
    for size in range(1, len(kinds) + 1):
        for group in combinations(kinds, size):
            slots = sum(h.slots for h in hosts.values() if set(group) & set(h.kinds))
            if slots == 0:
                raise ValueError(f"no host serves kinds {group}")
            best = max(best, sum(per_kind[k] for k in group) / slots)
    return best


def span_bound_s(
    tasks: Iterable[BenchTask],
    hosts: Mapping[str, HostSlots] | None = None,
    *,
    pinned: bool = False,
    default_kind: str = "text",
) -> float:
    """The latest ``arrival + service`` of any task, from the first arrival.

    With ``hosts``, a task's service is divided by the best speed a host allowed to run its
    kind has (only overflow speeds above 1 change it).
    """
    tasks = list(tasks)
    if not tasks:
        return 0.0
    start = min(t.arrival_s for t in tasks)
    ends = (
        t.arrival_s + t.service_s / _best_speed(t.kind, hosts, pinned, default_kind) for t in tasks
    )
    return max(ends) - start


def bounds(
    tasks: Sequence[BenchTask], hosts: Mapping[str, HostSlots], *, default_kind: str = "text"
) -> Bounds:
    """Both bounds of ``tasks`` on ``hosts``."""
    return Bounds(
        overflow_s=max(
            fluid_bound_s(tasks, hosts, default_kind=default_kind),
            span_bound_s(tasks, hosts, default_kind=default_kind),
        ),
        pinned_s=max(
            work_bound_s(tasks, hosts, default_kind=default_kind),
            span_bound_s(tasks, hosts, pinned=True, default_kind=default_kind),
        ),
    )


def bound_s(
    tasks: Sequence[BenchTask], hosts: Mapping[str, HostSlots], *, default_kind: str = "text"
) -> float:
    """The benchmark's bound: the overflow-aware one (the pinned one on a pinned fleet)."""
    return bounds(tasks, hosts, default_kind=default_kind).overflow_s


def _speed(host: HostSlots, kind: str) -> float:
    speed = host.speed_for(kind)
    assert speed is not None
    return speed


def _best_speed(
    kind: str, hosts: Mapping[str, HostSlots] | None, pinned: bool, default_kind: str
) -> float:
    if hosts is None:
        return 1.0
    kind = kind if _serving(kind, hosts) else default_kind
    speeds = [s for h in hosts.values() if (s := h.speed_for(kind, pinned=pinned)) is not None]
    return max(speeds, default=1.0)


def _ratio(bound: float, makespan_s: float) -> float | None:
    return round(bound / makespan_s, 4) if makespan_s > 0 else None


def _serving(kind: str, hosts: Mapping[str, HostSlots]) -> bool:
    return any(kind in h.kinds for h in hosts.values())
