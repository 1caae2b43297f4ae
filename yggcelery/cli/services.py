"""``ygg`` commands that run the cluster: worker, beat, loop, reconcile, status.

Each command that needs the broker first checks that it and the result backend answer
(:func:`require_broker`), so a command run or a service started during an outage says so at once
in one line and exits (systemd starts a service again) instead of a page of retries or a
traceback.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from yggcelery.beads import open_store
from yggcelery.celery_app import make_app
from yggcelery.cli.context import Context, pass_context
from yggcelery.connections import redis_client, redis_for
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.dispatch.choose import make_dispatcher
from yggcelery.exporter.durations import observe_results
from yggcelery.exporter.server import start_metrics_server
from yggcelery.reconcile import run_once
from yggcelery.routing import CLOUD_QUEUE, CLOUD_SLOTS
from yggcelery.settings import Settings
from yggcelery.status import full_status

log = logging.getLogger(__name__)


def worker_argv(settings: Settings, name: str, *, loglevel: str, pool: str) -> list[str]:
    """The ``celery worker`` arguments for host ``name`` (or ``control`` / ``cloud``)."""
    if name == "control":
        queue, slots = settings.control_queue, 1
    elif name == "cloud":
        queue, slots = CLOUD_QUEUE, CLOUD_SLOTS
    else:
        queue, slots = name, settings.host(name).slots
    return [
        "worker",
        "--queues", queue,
        "--concurrency", str(slots),
        "--hostname", f"{name}@%h",
        "--task-events",
        "--prefetch-multiplier", "1",
        "--pool", pool,
        "--loglevel", loglevel,
    ]  # fmt: skip


def require_broker(settings: Settings) -> None:
    """Raise the connection error when the broker or the result backend does not answer now.

    Only Redis is pinged (RabbitMQ's connection is checked by Celery itself at start).
    """
    for url in {settings.broker_url, settings.result_backend}:
        if url.startswith(("redis://", "rediss://", "unix://")):
            redis_client(url).ping()


@click.command()
@click.argument("host")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option(
    "--pool", default="prefork", show_default=True, help="Celery pool (prefork, threads)."
)
@pass_context
def worker(ctx: Context, host: str, loglevel: str, pool: str) -> None:
    """Run the Celery worker for HOST: its queue only, concurrency = its GPU slots.

    HOST is a configured host (surtr-reasoning, fenrir-chat, skadi-code, ...), or `control` for
    the worker that runs beat's reconcile job (where the Beads data is), or `cloud` for the
    cloud fallback's queue.
    """
    argv = worker_argv(ctx.settings, host, loglevel=loglevel, pool=pool)
    require_broker(ctx.settings)
    make_app(ctx.settings).worker_main(argv)


@click.command()
@click.option(
    "--schedule-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".ygg/beat-schedule"),
    show_default=True,
)
@click.option("--loglevel", default="INFO", show_default=True)
@pass_context
def beat(ctx: Context, schedule_file: Path, loglevel: str) -> None:
    """Run Celery beat: the reconcile job every `dispatch.reconcile_every_s` seconds."""
    require_broker(ctx.settings)
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    make_app(ctx.settings).start(["beat", "--schedule", str(schedule_file), "--loglevel", loglevel])


@click.command()
@click.option(
    "--legacy", "mode", flag_value="legacy", help="The old one-thread-per-type dispatcher."
)
@click.option("--async", "mode", flag_value="asyncio", help="The asyncio dispatcher.")
@click.option(
    "--celery", "mode", flag_value="celery", default=True, help="The Celery cluster (default)."
)
@click.option("--until-idle", is_flag=True, help="Stop when nothing is ready or in flight.")
@pass_context
def loop(ctx: Context, mode: str, until_idle: bool) -> None:
    """Poll Beads and dispatch ready issues (Celery by default).

    Ctrl+C finishes the current poll, hands queued-but-unstarted work back to `open`, and exits;
    no issue is left claimed but unsent.
    """
    logging.getLogger("yggcelery").setLevel(logging.INFO)
    if mode == "celery":
        require_broker(ctx.settings)
    # A taken metrics port is one error line before any work is claimed (an operator who
    # wants no /metrics sets metrics_port = 0), not a dispatcher nobody can watch.
    metrics = start_metrics_server(ctx.settings)
    try:
        dispatcher = make_dispatcher(mode, ctx.settings, open_store(ctx.settings))
        if isinstance(dispatcher, CeleryDispatcher):  # its inline reconcile passes close beads
            client = redis_for(ctx.settings)
            dispatcher.after_reconcile = lambda report: observe_results(client, report.closed)
        dispatcher.run(until_idle=until_idle)
    finally:
        if metrics is not None:
            metrics.close()


@click.command()
@click.option(
    "--once", is_flag=True, help="One pass, then exit (default: every reconcile_every_s)."
)
@pass_context
def reconcile(ctx: Context, once: bool) -> None:
    """Write finished, failed and lost work back into Beads (beat does this every 10 s)."""
    require_broker(ctx.settings)
    app, store, client = make_app(ctx.settings), open_store(ctx.settings), redis_for(ctx.settings)
    while True:
        report = run_once(ctx.settings, app, store)
        observe_results(client, report.closed)
        click.echo(json.dumps(report.counts(), sort_keys=True))
        if once:
            return
        time.sleep(ctx.settings.dispatch.reconcile_every_s)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Per host: slots, active, available, queued by priority, worker online; ready in Beads."""
    require_broker(ctx.settings)
    data = full_status(make_app(ctx.settings), ctx.settings, open_store(ctx.settings))
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    table = Table(title="yggcelery hosts")
    for column in ("host", "slots", "active", "available", "queued p0..p4", "worker"):
        table.add_column(column)
    for host, st in data["hosts"].items():
        queued = " ".join(str(n) for n in st["queued"].values())
        online = "[green]online" if st["online"] else "[red]offline"
        table.add_row(host, str(st["slots"]), str(st["active"]), str(st["available_slots"]),
                      queued, online)  # fmt: skip
    console = Console()
    console.print(table)
    ready = " ".join(f"{p}={n}" for p, n in data["beads_ready"].items())
    console.print(f"Ready in Beads: {ready}")
    console.print(_capacity_table(data["capacity"]))
    console.print(_estimates_table(data["estimates"]))
    for bead in data["promoted"]:
        console.print(
            f"Promoted by aging: {bead['bead']} {bead['filed']} → {bead['now']}"
            f" (ready {bead['waited_s']:.0f} s)"
        )


def _capacity_table(rows: list[dict[str, Any]]) -> Table:
    """Per host: configured vs effective slots, the server's parallelism, queue and GPU use."""
    table = Table(title="capacity (from each host's worker, every capacity.probe_s)")
    for column in ("host", "slots", "effective", "server runs", "waiting", "GPU", "read"):
        table.add_column(column)
    for row in rows:
        effective = str(row["effective"])
        if row["effective"] < row["configured"]:
            effective = f"[red]{effective}"
        gpu = "-" if row["gpu"] is None else f"{row['gpu']:.0%} ({row['gpu_source']})"
        read = "no reading" if row["age_s"] is None else f"{row['age_s']:.0f} s ago"
        if row["error"]:
            read = f"[red]{row['error']}"
        table.add_row(row["host"], str(row["configured"]), effective, _dash(row["parallel"]),
                      _dash(row["waiting"]), gpu, read)  # fmt: skip
    return table


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _estimates_table(rows: list[dict[str, Any]]) -> Table:
    """Expected service seconds per (host, kind), as ``ygg status`` shows them."""
    table = Table(title="expected service time")
    for column in ("host", "kind", "expected s", "source"):
        table.add_column(column)
    for row in rows:
        source = "measured" if row["measured"] else "configured"
        table.add_row(row["host"], row["kind"], f"{row['expected_s']:.1f}", source)
    return table
