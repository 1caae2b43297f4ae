"""``ygg bench``: legacy vs asyncio vs Celery on the benchmark scenarios, against the bound."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from yggcelery.bench import overhead
from yggcelery.bench.report import median_run, print_table, timeline_png, write_json
from yggcelery.bench.runner import DISPATCHERS, RunOptions, run_one
from yggcelery.bench.scenarios import QUICK_SCENARIOS, SCENARIOS, get_scenario
from yggcelery.settings import Settings

log = logging.getLogger(__name__)

#: Real seconds per simulated second. Each task through Celery costs about 0.1 real s of fixed
#: overhead on the 2-core build machine (publish, worker pick-up, result, reconcile); at 0.2 that
#: is 0.5 simulated s against 10 s tasks, the size of the seed's work. Smaller scales run faster
#: but charge that fixed cost to the dispatcher more heavily (see bench/README.md).
FULL_TIME_SCALE = 0.2
QUICK_TIME_SCALE = 0.02
#: Zero-latency beads per round of the overhead figure: a few seconds each, long enough that
#: start-up and the last close are not most of it.
OVERHEAD_TASKS = 500


def run_suite(
    settings: Settings,
    *,
    scenarios: Sequence[str],
    dispatchers: Sequence[str],
    options: RunOptions,
    repeat: int = 1,
    overhead_tasks: int = 0,
    results_dir: Path | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """Every scenario × dispatcher ``repeat`` times; the report (written if ``results_dir``)."""
    workroot = Path(tempfile.mkdtemp(prefix="ygg-bench-", dir=_scratch()))
    report: dict[str, Any] = {
        "time_scale": options.time_scale,
        "poll_sim_s": options.poll_sim_s,
        "watch_sim_s": options.watch_sim_s,
        "repeat": repeat,
        "scenarios": {},
    }
    try:
        for name in scenarios:
            scenario = get_scenario(name)
            report["scenarios"][name] = {}
            for dispatcher in dispatchers:
                report["scenarios"][name][dispatcher] = _runs(
                    scenario.name,
                    dispatcher,
                    settings=settings,
                    options=options,
                    repeat=repeat,
                    root=workroot,
                )
        if overhead_tasks:
            log.warning("bench: dispatch overhead (%d zero-latency tasks)", overhead_tasks)
            report["overhead"] = overhead.measure(
                settings, tasks=overhead_tasks, workdir=workroot, dispatchers=tuple(dispatchers)
            )
    finally:
        if keep:
            click.echo(f"run folders kept in {workroot}", err=True)
        else:
            shutil.rmtree(workroot, ignore_errors=True)
    if results_dir is not None:
        _write(report, settings, results_dir)
    return report


def _scratch() -> str | None:
    """tmpfs when there is one: Beads writes fsync, and the bench measures dispatch, not disks."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _runs(
    scenario: str,
    dispatcher: str,
    *,
    settings: Settings,
    options: RunOptions,
    repeat: int,
    root: Path,
) -> dict[str, Any]:
    runs = []
    for i in range(repeat):
        log.warning("bench: %s × %s (run %d/%d)", scenario, dispatcher, i + 1, repeat)
        try:
            workdir = root / f"{scenario}-{dispatcher}-{i}"
            runs.append(
                run_one(
                    get_scenario(scenario),
                    dispatcher,
                    base=settings,
                    options=options,
                    workdir=workdir,
                )
            )
        except Exception as exc:  # one broken dispatcher must not hide the others' figures
            log.exception("bench: %s × %s failed", scenario, dispatcher)
            return {"error": f"{type(exc).__name__}: {exc}"}
    return median_run(runs)


def _write(report: dict[str, Any], settings: Settings, results_dir: Path) -> None:
    slots = {n: h.slots for n, h in settings.hosts.items()}
    for scenario, runs in report["scenarios"].items():
        for dispatcher, run in runs.items():
            if "error" in run:
                continue
            title = (
                f"{scenario} × {dispatcher}: makespan {run['makespan_s']:.1f}s,"
                f" bound {run['bound_s']:.1f}s (dashed)"
            )
            path = results_dir / f"timeline-{scenario}-{dispatcher}.png"
            run["timeline_png"] = str(timeline_png(run, slots=slots, title=title, path=path))
    path = write_json(report, results_dir)
    click.echo(f"results: {path} (and latest.json)")


@click.command("bench")
@click.option(
    "--quick",
    is_flag=True,
    help="synthetic_20_20 only, at a smaller time scale, no overhead run (about a minute).",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0.001),
    default=None,
    help=f"Real s per simulated s (default {FULL_TIME_SCALE}, quick {QUICK_TIME_SCALE}).",
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice(list(SCENARIOS)),
    help="Run only this scenario (repeatable).",
)
@click.option(
    "--dispatcher",
    "dispatchers",
    multiple=True,
    type=click.Choice(list(DISPATCHERS)),
    help="Run only this dispatcher (repeatable).",
)
@click.option(
    "--repeat", type=click.IntRange(min=1), default=1, help="Runs per pair; the median is kept."
)
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench/results"),
    show_default=True,
)
@click.option(
    "--overhead-tasks",
    type=click.IntRange(min=0),
    default=None,
    help="Zero-latency beads per round of the overhead figure (default 500; quick: 0 = skip).",
)
@click.option("--keep", is_flag=True, help="Keep each run's folder (logs, Beads file).")
@click.pass_context
def bench(  # noqa: PLR0917 (click passes options positionally)
    ctx: click.Context,
    quick: bool,
    time_scale: float | None,
    scenarios: tuple[str, ...],
    dispatchers: tuple[str, ...],
    repeat: int,
    overhead_tasks: int | None,
    results_dir: Path,
    keep: bool,
) -> None:
    """Legacy vs asyncio vs Celery against the theoretical bound; JSON and PNGs in bench/results."""
    settings = ctx.find_root().obj.settings
    logging.getLogger("httpx").setLevel(logging.WARNING)
    scale = time_scale or (QUICK_TIME_SCALE if quick else FULL_TIME_SCALE)
    chosen = scenarios or (QUICK_SCENARIOS if quick else tuple(SCENARIOS))
    report = run_suite(
        settings,
        scenarios=chosen,
        dispatchers=dispatchers or DISPATCHERS,
        options=RunOptions(time_scale=scale),
        repeat=repeat,
        overhead_tasks=(0 if quick else OVERHEAD_TASKS)
        if overhead_tasks is None
        else overhead_tasks,
        results_dir=results_dir,
        keep=keep,
    )
    print_table(report)
