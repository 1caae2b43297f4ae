"""The benchmark's outputs: a rich table, ``bench/results/*.json`` and one timeline PNG per run.

JSON shape (``latest.json`` and ``bench-<UTC timestamp>.json``)::

    {"time_scale": 0.1, "created": "...", "scenarios": {"<scenario>": {"<dispatcher>": {
        "makespan_s", "bound_s", "ratio_to_bound", "pinned_bound_s", "ratio_to_pinned_bound",
        "utilization": {host: 0..1}, "gpu_use_while_waiting", "completion_s": {"mean", "p99"},
        "p0_wait_s", "wait_by_priority_s", "max_wait_by_priority_s", "queue_depth",
        "peak_rss_mib", "cpu_s", "ctx_switches", ...}}}}

``bound_s`` is the overflow-aware bound (the pinned one when no host overflows), and
``pinned_bound_s`` the bound with every kind on its own hosts (see ``bound.py``).
Times are simulated seconds. With repeats, each entry is the run with the median makespan,
plus ``makespan_runs_s`` listing every run's makespan.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

#: Bar colours of the timeline, by Beads priority.
PRIORITY_COLOURS = {0: "#d62728", 1: "#ff7f0e", 2: "#1f77b4", 3: "#7f7f7f", 4: "#c7c7c7"}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median makespan, with every run's makespan and p0 wait attached."""
    ordered = sorted(runs, key=lambda r: r["makespan_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        chosen["makespan_runs_s"] = [r["makespan_s"] for r in runs]
        chosen["makespan_median_s"] = round(statistics.median(r["makespan_s"] for r in runs), 3)
        waits = [r["p0_wait_s"] for r in runs if r.get("p0_wait_s") is not None]
        if waits:
            chosen["p0_wait_runs_s"] = waits
            chosen["p0_wait_median_s"] = round(statistics.median(waits), 3)
    return chosen


def write_json(report: dict[str, Any], results_dir: Path) -> Path:
    """Write ``bench-<UTC timestamp>.json`` and ``latest.json``; the timestamped path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(report, indent=1, sort_keys=False) + "\n"
    path = results_dir / f"bench-{stamp}.json"
    path.write_text(text)
    (results_dir / "latest.json").write_text(text)
    return path


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def table(report: dict[str, Any]) -> Table:
    """One row per scenario × dispatcher."""
    out = Table(title=f"yggcelery bench (simulated seconds, time scale {report['time_scale']})")
    for name in (
        "scenario",
        "dispatcher",
        "makespan",
        "bound",
        "ratio",
        "util",
        "p0 wait",
        "RSS MiB",
        "CPU s",
        "ctx sw",
        "closed",
    ):
        out.add_column(name, justify="left" if name in ("scenario", "dispatcher") else "right")
    for scenario, runs in report["scenarios"].items():
        for dispatcher, r in runs.items():
            if "error" in r:
                out.add_row(scenario, dispatcher, f"[red]{r['error'][:60]}")
                continue
            util = r["utilization"]
            mean_util = sum(util.values()) / len(util) if util else 0.0
            out.add_row(
                scenario,
                dispatcher,
                _fmt(r["makespan_s"]),
                _fmt(r["bound_s"]),
                _fmt(r["ratio_to_bound"], ".3f"),
                _fmt(mean_util, ".0%"),
                _fmt(r["p0_wait_s"]),
                _fmt(r["peak_rss_mib"]),
                _fmt(r["cpu_s"], ".2f"),
                str(r["ctx_switches"]),
                f"{r['closed']}/{r['beads']}" + (" TIMEOUT" if r["timed_out"] else ""),
            )
    return out


def schedule_table(report: dict[str, Any]) -> Table:
    """Scheduling figures, one row per scenario × dispatcher: both bounds, GPU use, waits."""
    out = Table(title="scheduling (simulated seconds; GPU use counted while a bead waited)")
    for name in (
        "scenario",
        "dispatcher",
        "bound",
        "ratio",
        "pinned bound",
        "ratio",
        "GPU while waiting",
        "mean done",
        "p99 done",
        "max wait by priority",
    ):
        out.add_column(name, justify="left" if name in ("scenario", "dispatcher") else "right")
    for scenario, runs in report["scenarios"].items():
        for dispatcher, r in runs.items():
            if "error" in r:
                continue
            done = r.get("completion_s") or {}
            waits = r.get("max_wait_by_priority_s") or {}
            out.add_row(
                scenario,
                dispatcher,
                _fmt(r.get("bound_s")),
                _fmt(r.get("ratio_to_bound"), ".3f"),
                _fmt(r.get("pinned_bound_s")),
                _fmt(r.get("ratio_to_pinned_bound"), ".3f"),
                _fmt(r.get("gpu_use_while_waiting"), ".0%"),
                _fmt(done.get("mean")),
                _fmt(done.get("p99")),
                " ".join(f"{p} {w:.0f}" for p, w in waits.items()) or "—",
            )
    return out


def print_table(report: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        console.width = max(console.width, 130)  # a pipe gets 80 columns: too few for the table
    console.print(table(report))
    console.print(schedule_table(report))
    if "overhead" in report:
        figures = {k: v for k, v in report["overhead"].items() if k != "samples"}
        rates = ", ".join(f"{k} {v}" for k, v in figures.items())
        console.print(f"dispatch overhead (zero-latency tasks/s, medians): {rates}")


def timeline_png(run: dict[str, Any], *, slots: dict[str, int], title: str, path: Path) -> Path:
    """One row per host slot, each task a bar from its start to its finish, coloured by priority."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = [(host, slot) for host, n in slots.items() for slot in range(n)]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.6))
    for bar in run["timeline"]:
        y = rows.index((bar["host"], bar["slot"])) if (bar["host"], bar["slot"]) in rows else 0
        width = bar["end_s"] - bar["start_s"]
        colour = PRIORITY_COLOURS.get(bar["priority"], "#c7c7c7")
        ax.broken_barh(
            [(bar["start_s"], width)], (y - 0.4, 0.8), facecolors=colour, edgecolor="white"
        )
    ax.set_yticks(range(len(rows)), [f"{h} #{s}" for h, s in rows])
    ax.invert_yaxis()
    ax.set_xlabel("simulated seconds since the scenario started")
    ax.axvline(run["bound_s"], color="black", linestyle="--", linewidth=1)
    pinned = run.get("pinned_bound_s")
    if pinned is not None and abs(pinned - run["bound_s"]) > 1e-6:
        ax.axvline(pinned, color="black", linestyle=":", linewidth=1)
    ax.set_title(title)
    ax.legend(
        handles=[Patch(color=c, label=f"p{p}") for p, c in PRIORITY_COLOURS.items()],
        loc="upper right",
        fontsize="small",
        ncols=5,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
