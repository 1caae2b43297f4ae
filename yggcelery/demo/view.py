"""What ``ygg demo`` shows: the live progress while issues run, and the summary at the end.

Both are pure functions of plain snapshots (no I/O), so the demo's runner gathers the figures and
these only draw them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import mean

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

PRIORITIES = ("p0", "p1", "p2", "p3", "p4")


@dataclass(frozen=True)
class HostLine:
    """One host right now: GPU slots busy (the simulator), broker queue by priority, served."""

    name: str
    slots: int
    busy: int
    queued: dict[str, int]
    served: int


@dataclass(frozen=True)
class Progress:
    """The whole demo right now."""

    hosts: list[HostLine]
    done: int
    total: int
    elapsed_s: float
    ready_in_beads: int = 0


@dataclass(frozen=True)
class HostSummary:
    """One host at the end: tasks served, GPU busy share, and each task's wait by priority."""

    name: str
    slots: int
    tasks: int
    busy_share: float
    #: (Beads priority, seconds from ready to a GPU slot) per task.
    waits: list[tuple[int, float]] = field(default_factory=list)

    def mean_wait_s(self, priority: int) -> float | None:
        values = [w for p, w in self.waits if p == priority]
        return mean(values) if values else None


def slot_bar(busy: int, slots: int) -> Text:
    """``██░ 2/3``: one block per slot."""
    text = Text("█" * busy, style="green")
    text.append("░" * max(slots - busy, 0), style="dim")
    text.append(f" {busy}/{slots}")
    return text


def progress_view(progress: Progress) -> RenderableType:
    """The live display: a table of hosts, then overall done/total."""
    table = Table(title="yggcelery demo: GPU slots busy, broker queue by priority", expand=False)
    table.add_column("host", no_wrap=True)
    table.add_column("slots busy", no_wrap=True)
    for level in PRIORITIES:
        table.add_column(f"queued {level}", justify="right")
    table.add_column("done", justify="right")
    for host in progress.hosts:
        queued = [str(host.queued.get(level, 0)) for level in PRIORITIES]
        table.add_row(host.name, slot_bar(host.busy, host.slots), *queued, str(host.served))
    bar = ProgressBar(total=max(progress.total, 1), completed=progress.done, width=40)
    line = Text(
        f" {progress.done}/{progress.total} issues closed · {progress.ready_in_beads} ready"
        f" in Beads · {progress.elapsed_s:.1f} s"
    )
    return Group(table, _grid(bar, line))


def _grid(bar: ProgressBar, line: Text) -> Table:
    grid = Table.grid()
    grid.add_row(bar, line)
    return grid


def summary_table(hosts: Iterable[HostSummary], *, time_scale: float) -> Table:
    """Per host: tasks, GPU busy %, mean wait (real seconds) from ready to a slot, by priority."""
    table = Table(title="Summary per host (waits: real seconds from ready to a GPU slot)")
    table.add_column("host", no_wrap=True)
    table.add_column("slots", justify="right")
    table.add_column("tasks", justify="right")
    table.add_column("GPU busy", justify="right")
    for level in PRIORITIES:
        table.add_column(f"wait {level}", justify="right")
    for host in hosts:
        waits = [host.mean_wait_s(p) for p in range(len(PRIORITIES))]
        table.add_row(
            host.name,
            str(host.slots),
            str(host.tasks),
            f"{100 * host.busy_share:.0f} %",
            *("-" if w is None else f"{w:.1f}" for w in waits),
        )
    table.caption = f"simulated GPUs at time scale {time_scale:g} (real s per simulated s)"
    return table


def waits_by_host(
    records: Iterable[dict[str, object]],
    *,
    priority_of: dict[str, int],
    ready_at: dict[str, float],
) -> dict[str, list[tuple[int, float]]]:
    """(priority, wait) per host from the simulator's records of served requests."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for record in records:
        bead, started = record.get("bead"), record.get("started")
        if record.get("status") != 200 or not isinstance(bead, str) or bead not in ready_at:
            continue
        if not isinstance(started, int | float):
            continue
        wait_s = max(float(started) - ready_at[bead], 0.0)
        out[str(record["host"])].append((priority_of[bead], wait_s))
    return dict(out)
