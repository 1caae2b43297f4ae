"""``ygg`` commands that run the cluster: worker, beat, loop, reconcile, status."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from yggcelery.cli import Context, pass_context
from yggcelery.settings import Settings

log = logging.getLogger(__name__)


def worker_argv(settings: Settings, name: str, *, loglevel: str, pool: str) -> list[str]:
    """The ``celery worker`` arguments for host ``name`` (or ``control`` / ``cloud``)."""
    from yggcelery.celery_app import CLOUD_QUEUE, CLOUD_SLOTS

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
    from yggcelery.celery_app import make_app

    argv = worker_argv(ctx.settings, host, loglevel=loglevel, pool=pool)
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
    from yggcelery.celery_app import make_app

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
    from yggcelery.beads import open_store
    from yggcelery.dispatch import make_dispatcher
    from yggcelery.metrics import start_metrics_server

    logging.getLogger("yggcelery").setLevel(logging.INFO)
    dispatcher = make_dispatcher(mode, ctx.settings, open_store(ctx.settings))
    try:
        metrics = start_metrics_server(ctx.settings)
    except OSError as exc:  # dispatching matters more than its metrics: say so and go on
        log.warning(
            "metrics: cannot listen on %s:%s (%s); running without /metrics",
            ctx.settings.metrics_address, ctx.settings.metrics_port, exc.strerror,
        )  # fmt: skip
        metrics = None
    try:
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
    import time

    from yggcelery.celery_app import make_app
    from yggcelery.reconcile import run_once

    app = make_app(ctx.settings)
    while True:
        click.echo(json.dumps(run_once(ctx.settings, app).counts(), sort_keys=True))
        if once:
            return
        time.sleep(ctx.settings.dispatch.reconcile_every_s)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Per host: slots, active, available, queued by priority, worker online; ready in Beads."""
    from yggcelery.beads import open_store
    from yggcelery.celery_app import make_app
    from yggcelery.status import full_status

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
