"""Dispatch overhead: what the whole path costs per task when the model costs nothing.

On one Redis and one set of ``ygg worker`` processes, with a simulator that answers at once
(every bead asks for ``service_s = 0``):

- **no-op**: plain Celery tasks (Celery's built-in ``celery.accumulate``, which returns its
  arguments) sent round-robin to the host queues, results awaited: the broker and workers alone;
- **path**: beads through the Celery dispatcher — claim in Beads, publish, worker, HTTP to the
  simulator, result, reconcile, comment and close in Beads — until all are closed.

Each is reported in tasks per second; ``ratio`` = path / no-op (1 would mean the dispatcher adds
nothing), the median over a few rounds of both, back to back (:func:`measure`). The asyncio
and legacy dispatchers' paths are measured the same way for comparison.
"""

from __future__ import annotations

import logging
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from yggcelery.beads import JsonlStore
from yggcelery.bench.processes import DispatcherProcess, SimProcess
from yggcelery.bench.runner import RunOptions, cluster, feed, run_settings
from yggcelery.bench.scenarios import BenchTask, Scenario
from yggcelery.settings import Settings
from yggcelery.testing.redis import RedisServer

log = logging.getLogger(__name__)

#: Paired (no-op, path) measurements per figure; the medians are reported.
ROUNDS = 3


def zero_scenario(tasks: int) -> Scenario:
    """``tasks`` beads of zero service time, kinds round-robin, all priority 2."""
    kinds = ("code", "text", "reasoning")
    return Scenario(
        name=f"zero{tasks}",
        description="zero-latency beads",
        tasks=tuple(
            BenchTask(key=f"z{i}", title=f"zero {i}", kind=kinds[i % 3], priority=2, service_s=0.0)
            for i in range(tasks)
        ),
    )


def noop_rate(settings: Settings, *, tasks: int, timeout_s: float = 120.0) -> float:
    """Plain Celery no-op tasks per second through the host queues and their workers."""
    from yggcelery.celery_app import make_app

    app = make_app(settings)
    hosts = list(settings.hosts)
    started = time.monotonic()
    results = [
        app.send_task("celery.accumulate", args=(i,), queue=hosts[i % len(hosts)], priority=2)
        for i in range(tasks)
    ]
    for result in results:
        result.get(timeout=timeout_s)
    return tasks / (time.monotonic() - started)


def path_rate(
    dispatcher: str, settings: Settings, *, tasks: int, workdir: Path, options: RunOptions
) -> float:
    """Zero-latency beads per second through ``dispatcher``, from go to the last close.

    The beads go into a fresh Beads folder under ``workdir``; the hosts (and, for Celery, the
    broker and workers) are those of ``settings``, so one cluster serves several rounds.
    """
    scenario = zero_scenario(tasks)
    beads = settings.beads.model_copy(update={"dir": workdir / ".beads"})
    settings = settings.model_copy(update={"beads": beads})
    beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    proc = DispatcherProcess(dispatcher, settings, workdir=workdir)
    try:
        proc.start()
        fed = feed(scenario, store, proc, settings=settings, options=options)
        proc.stop()
    finally:
        proc.kill()
    if fed.timed_out:
        raise TimeoutError(f"{dispatcher}: {tasks} zero-latency beads not closed in time")
    return tasks / (fed.done_at - fed.t0)


def measure(
    base: Settings,
    *,
    tasks: int,
    workdir: Path,
    dispatchers: tuple[str, ...],
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """``{"tasks", "rounds", "celery_noop_tasks_per_s", "<dispatcher>_tasks_per_s", "ratio",
    "samples"}``: medians over ``rounds``.

    Throughput on a small shared machine swings by a third from one run to the next, for
    no-op tasks as much as for beads. So each round measures the no-op rate and then the
    Celery path, back to back on the same cluster, and ``ratio`` is the median of the rounds'
    own ratios; every round's figures are kept under ``samples``.
    """
    options = RunOptions(time_scale=1.0, poll_sim_s=0.02)
    out: dict[str, Any] = {"tasks": tasks, "rounds": rounds}
    samples: dict[str, list[float]] = {}
    for name in dispatchers:
        run_dir = workdir / f"overhead-{name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            broker = stack.enter_context(RedisServer()).url(0) if name == "celery" else None
            settings = run_settings(base, workdir=run_dir, options=options, broker_url=broker)
            stack.enter_context(SimProcess(settings, time_scale=1.0, workdir=run_dir))
            if name == "celery":
                stack.enter_context(cluster(settings, run_dir))
                noop_rate(settings, tasks=10)  # warm the workers' pools and connections
            for n in range(rounds):
                if name == "celery":
                    noop = noop_rate(settings, tasks=tasks)
                    samples.setdefault("celery_noop_tasks_per_s", []).append(round(noop, 1))
                rate = path_rate(
                    name, settings, tasks=tasks, workdir=run_dir / f"round{n}", options=options
                )
                samples.setdefault(f"{name}_tasks_per_s", []).append(round(rate, 1))
    if "celery_tasks_per_s" in samples:
        pairs = zip(samples["celery_tasks_per_s"], samples["celery_noop_tasks_per_s"], strict=True)
        samples["ratio"] = [round(path / noop, 3) for path, noop in pairs]
    out.update({key: statistics.median(values) for key, values in samples.items()})
    out["samples"] = samples
    return out
