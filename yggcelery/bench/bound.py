"""The yardstick: a makespan no schedule can beat, for tasks bound to hosts by their kind.

Two lower bounds, and the larger one is reported (DESIGN.md, "The benchmark's yardstick"):

- **work**: the tasks of any set of kinds K can only run on the hosts that serve some kind in K,
  so they need at least ``sum(service of K) / sum(slots of those hosts)``. With one host per kind
  this is ``max over hosts of (sum of that host's service times / its slots)``; a kind served by
  several hosts gets the fluid bound over all of them. The maximum over every K is taken (a
  handful of kinds: the subsets are few).
- **span**: no task finishes before it arrives plus its own service time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from yggcelery.bench.scenarios import BenchTask


@dataclass(frozen=True, kw_only=True)
class HostSlots:
    """What the bound needs of a host: its GPU slots and the kinds it serves."""

    slots: int
    kinds: tuple[str, ...]


def work_bound_s(
    tasks: Sequence[BenchTask], hosts: Mapping[str, HostSlots], *, default_kind: str = "text"
) -> float:
    """The largest ``service of K / slots serving K`` over every non-empty set of kinds K."""
    per_kind: dict[str, float] = {}
    for task in tasks:
        kind = task.kind if _serving(task.kind, hosts) else default_kind
        per_kind[kind] = per_kind.get(kind, 0.0) + task.service_s
    best = 0.0
    kinds = sorted(per_kind)
    for size in range(1, len(kinds) + 1):
        for group in combinations(kinds, size):
            slots = sum(h.slots for h in hosts.values() if set(group) & set(h.kinds))
            if slots == 0:
                raise ValueError(f"no host serves kinds {group}")
            best = max(best, sum(per_kind[k] for k in group) / slots)
    return best


def span_bound_s(tasks: Iterable[BenchTask]) -> float:
    """The latest ``arrival + service`` of any task, from the first arrival."""
    tasks = list(tasks)
    if not tasks:
        return 0.0
    start = min(t.arrival_s for t in tasks)
    return max(t.arrival_s + t.service_s for t in tasks) - start


def bound_s(
    tasks: Sequence[BenchTask], hosts: Mapping[str, HostSlots], *, default_kind: str = "text"
) -> float:
    """The benchmark's bound: the larger of the work bound and the span bound."""
    return max(work_bound_s(tasks, hosts, default_kind=default_kind), span_bound_s(tasks))


def _serving(kind: str, hosts: Mapping[str, HostSlots]) -> bool:
    return any(kind in h.kinds for h in hosts.values())
