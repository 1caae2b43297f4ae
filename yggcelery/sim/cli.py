"""``ygg sim``: serve the configured hosts' simulators in the foreground until Ctrl+C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from yggcelery.settings import Settings, load_settings
from yggcelery.sim.fleet import SimFleet

log = logging.getLogger(__name__)


@click.command("sim")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Real seconds per simulated second (default: settings sim.time_scale).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="NAME",
    help="Serve only this configured host (repeatable; default: all).",
)
@click.pass_context
def sim(ctx: click.Context, time_scale: float | None, hosts: tuple[str, ...]) -> None:
    """Serve simulated model hosts on the configured base_url ports (Ollama + OpenAI APIs)."""
    settings = _settings(ctx)
    for name in hosts:
        settings.host(name)  # an unknown name is a ConfigError listing the known ones
    fleet = SimFleet.from_settings(settings, time_scale=time_scale, names=hosts or None)
    serve(fleet)


def serve(fleet: SimFleet) -> None:
    """Start ``fleet``, print one line per host, and block until SIGINT or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("sim: signal %s, stopping", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        fleet.start()
        for host in fleet:
            config = host.config
            parallel = "" if config.parallel is None else f" parallel={config.parallel}"
            click.echo(
                f"sim {host.name}: {host.url} {config.server} model={config.model}"
                f" slots={config.slots}{parallel} kind={config.kind} time_scale={config.time_scale}"
            )
        click.echo("sim: ready (Ctrl+C to stop)")
        stop.wait()
    finally:
        fleet.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("sim: stopped")


def _settings(ctx: click.Context) -> Settings:
    """The ``ygg`` command's settings when run under it, else freshly loaded ones."""
    obj = ctx.find_root().obj
    loaded = getattr(obj, "settings", None)
    return loaded if isinstance(loaded, Settings) else load_settings()
