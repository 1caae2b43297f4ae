"""Figures of one benchmark run, from the simulator's per-request records (pure functions).

All results are in *simulated* seconds: real seconds divided by the time scale. ``t0`` is the
moment the scenario started (its first beads were ready and the dispatcher was told to go);
a bead's arrival is when it was created in Beads.

- makespan: ``t0`` → the last finish;
- wait: a bead's start on a GPU slot − its arrival (by priority; p0 is the headline);
- utilisation: busy slot-seconds / (slots × makespan), per host;
- queue depth: beads arrived but not yet started on a slot, over time;
- host concurrency: the most requests a dispatcher had at a host at once (arrived → finished);
  above the host's slots means requests waited in the host's own queue;
- GPU use while work waited: busy slot-seconds / available slot-seconds over the time at least
  one bead had arrived and not started (idle GPUs with nothing to do do not count against it);
- completion: a bead's first answer − its arrival (mean, p99, max).
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


def busy_while_waiting(
    served: Sequence[Served], *, arrivals: Mapping[str, float], slots: Mapping[str, int]
) -> dict[str, Any]:
    """Busy slot-seconds over available ones while some bead waited, for the fleet and per host.

    ``{"fleet": 0..1, "hosts": {host: 0..1}, "waiting_s": real seconds with a bead waiting}``;
    the ratios are None when no bead ever waited.
    """
    starts = _first_starts(served)
    # (time, host or "" for the queue of waiting beads, change); a bead never started waits on
    events = [(t, "", 1) for t in arrivals.values()]
    events += [(start, "", -1) for start in starts.values()]
    for s in served:
        events += [(s.started, s.host, 1), (s.finished, s.host, -1)]
    busy_s, waiting_s = _sweep(sorted(events), hosts=slots)
    if waiting_s <= 0:
        return {"fleet": None, "hosts": dict.fromkeys(slots), "waiting_s": 0.0}
    fleet = sum(busy_s.values()) / (sum(slots.values()) * waiting_s)
    return {
        "fleet": round(fleet, 4),
        "hosts": {h: round(busy_s[h] / (n * waiting_s), 4) for h, n in slots.items()},
        "waiting_s": waiting_s,
    }


def _sweep(
    events: Sequence[tuple[float, str, int]], *, hosts: Mapping[str, int]
) -> tuple[dict[str, float], float]:
    """Per-host busy seconds and the seconds with a bead waiting, over those seconds only."""
    busy_s = dict.fromkeys(hosts, 0.0)
    running = dict.fromkeys(hosts, 0)
    depth, waiting_s = 0, 0.0
    for (t, host, change), following in zip(events, [*events[1:], None], strict=True):
        if host:
            running[host] = running.get(host, 0) + change
        else:
            depth += change
        span = (following[0] - t) if following is not None else 0.0
        if depth > 0 and span > 0:
            waiting_s += span
            for name in busy_s:
                busy_s[name] += min(running[name], hosts[name]) * span
    return busy_s, waiting_s


def completion_s(
    served: Sequence[Served], *, arrivals: Mapping[str, float], time_scale: float
) -> dict[str, Any]:
    """Simulated seconds from each bead's arrival to its first answer: n, mean, p99, max."""
    finished: dict[str, float] = {}
    for s in served:
        finished[s.bead] = min(finished.get(s.bead, s.finished), s.finished)
    values = sorted((f - arrivals[b]) / time_scale for b, f in finished.items())
    if not values:
        return {"n": 0, "mean": None, "p99": None, "max": None}
    p99 = (
        statistics.quantiles(values, n=100, method="inclusive")[98]
        if len(values) > 1
        else values[0]
    )
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 3),
        "p99": round(p99, 3),
        "max": round(values[-1], 3),
    }


def schedule_figures(
    served: Sequence[Served],
    *,
    arrivals: Mapping[str, float],
    priorities: Mapping[str, int],
    slots: Mapping[str, int],
    time_scale: float,
) -> dict[str, Any]:
    """The scheduling figures of a run: GPU use while work waited, completion, worst waits."""
    waiting = busy_while_waiting(served, arrivals=arrivals, slots=slots)
    waits = waits_s(served, arrivals=arrivals, time_scale=time_scale)
    worst: dict[str, float] = {}
    for bead, wait in waits.items():
        key = f"p{priorities[bead]}"
        worst[key] = round(max(worst.get(key, 0.0), wait), 3)
    return {
        "gpu_use_while_waiting": waiting["fleet"],
        "gpu_use_while_waiting_by_host": waiting["hosts"],
        "waiting_s": round(waiting["waiting_s"] / time_scale, 3),
        "completion_s": completion_s(served, arrivals=arrivals, time_scale=time_scale),
        "max_wait_by_priority_s": dict(sorted(worst.items())),
    }


def _first_starts(served: Sequence[Served]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in served:
        out[s.bead] = min(out.get(s.bead, s.started), s.started)
    return out


def start_order(served: Sequence[Served]) -> list[str]:
    """Bead ids in the order they first got a slot."""
    seen: list[str] = []
    for s in sorted(served, key=lambda s: s.started):
        if s.bead not in seen:
            seen.append(s.bead)
    return seen
