"""Figures of one benchmark run, from the simulator's per-request records (pure functions).

All results are in *simulated* seconds: real seconds divided by the time scale. ``t0`` is the
moment the scenario started (its first beads were ready and the dispatcher was told to go);
a bead's arrival is when it was created in Beads.

- makespan: ``t0`` → the last finish;
- wait: a bead's start on a GPU slot − its arrival (by priority; p0 is the headline);
- utilisation: busy slot-seconds / (slots × makespan), per host;
- queue depth: beads arrived but not yet started on a slot, over time;
- host concurrency: the most requests a dispatcher had at a host at once (arrived → finished);
  above the host's slots means requests waited in the host's own queue.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Served:
    """One bead's successful model request, as the simulator recorded it (wall-clock seconds)."""

    bead: str
    host: str
    priority: int
    slot: int
    arrived: float
    started: float
    finished: float


def served_requests(
    records: Sequence[Mapping[str, Any]], *, beads: Mapping[str, int]
) -> list[Served]:
    """The answered (HTTP 200) requests of the run's beads; ``beads`` maps bead id → priority."""
    out = []
    for rec in records:
        bead = rec.get("bead")
        if bead not in beads or rec.get("status") != 200 or rec.get("started") is None:
            continue
        out.append(
            Served(
                bead=str(bead),
                host=str(rec["host"]),
                priority=beads[str(bead)],
                slot=int(rec.get("slot") or 0),
                arrived=float(rec["arrived"]),
                started=float(rec["started"]),
                finished=float(rec["finished"]),
            )
        )
    return sorted(out, key=lambda s: s.started)


def waits_s(
    served: Sequence[Served], *, arrivals: Mapping[str, float], time_scale: float
) -> dict[str, float]:
    """Bead id → simulated seconds from its arrival to its (first) start on a slot."""
    out: dict[str, float] = {}
    for s in served:
        if s.bead not in out:
            out[s.bead] = max(s.started - arrivals[s.bead], 0.0) / time_scale
    return out


def wait_by_priority(waits: Mapping[str, float], priorities: Mapping[str, int]) -> dict[str, Any]:
    """``{"p0": {"n", "mean", "median", "max"}, ...}`` for the priorities present."""
    groups: dict[int, list[float]] = {}
    for bead, wait in waits.items():
        groups.setdefault(priorities[bead], []).append(wait)
    return {
        f"p{p}": {
            "n": len(values),
            "mean": round(statistics.fmean(values), 3),
            "median": round(statistics.median(values), 3),
            "max": round(max(values), 3),
        }
        for p, values in sorted(groups.items())
    }


def utilisation(
    served: Sequence[Served], *, slots: Mapping[str, int], makespan_s: float, time_scale: float
) -> dict[str, float]:
    """Host → busy slot-seconds / (slots × makespan), 0..1."""
    busy = dict.fromkeys(slots, 0.0)
    for s in served:
        busy[s.host] = busy.get(s.host, 0.0) + (s.finished - s.started) / time_scale
    if makespan_s <= 0:
        return dict.fromkeys(busy, 0.0)
    return {h: round(b / (slots.get(h, 1) * makespan_s), 4) for h, b in busy.items()}


def queue_depth(
    served: Sequence[Served], *, arrivals: Mapping[str, float], t0: float, time_scale: float
) -> dict[str, Any]:
    """Beads arrived but not started, as ``{"max": n, "series": [[t_s, depth], ...]}``."""
    first_start: dict[str, float] = {}
    for s in served:
        first_start.setdefault(s.bead, s.started)
    events = [(t, +1) for t in arrivals.values()]
    events += [(first_start[b], -1) for b in arrivals if b in first_start]
    events.sort(key=lambda e: (e[0], -e[1]))
    depth = 0
    series: list[list[float]] = []
    for t, change in events:
        depth += change
        point: list[float] = [round((t - t0) / time_scale, 3), depth]
        if series and series[-1][0] == point[0]:
            series[-1] = point
        else:
            series.append(point)
    return {"max": max((d for _, d in series), default=0), "series": series}


def host_concurrency(served: Sequence[Served]) -> dict[str, int]:
    """Host → the most requests it held at once (arrived → finished), queued ones included."""
    out: dict[str, int] = {}
    for host in {s.host for s in served}:
        events = [(s.arrived, 1) for s in served if s.host == host]
        events += [(s.finished, -1) for s in served if s.host == host]
        events.sort(key=lambda e: (e[0], e[1]))  # a finish before an arrival at the same instant
        now = peak = 0
        for _, change in events:
            now += change
            peak = max(peak, now)
        out[host] = peak
    return out


def start_order(served: Sequence[Served]) -> list[str]:
    """Bead ids in the order they first got a slot."""
    seen: list[str] = []
    for s in sorted(served, key=lambda s: s.started):
        if s.bead not in seen:
            seen.append(s.bead)
    return seen
