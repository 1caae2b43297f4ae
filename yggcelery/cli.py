"""The ``ygg`` command. Each area keeps its commands in its own module; this file only wires them.

ygg loop [--legacy|--async]   run a dispatcher (Celery by default)
ygg worker HOST               the Celery worker for one host (its queue, its slots)
ygg beat | flower | status | reconcile --once
ygg beads ready|show|close|block|reopen
ygg sim | demo | bench
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from yggcelery.errors import YggError
from yggcelery.settings import Settings, load_settings


class Context:
    """What every command gets: the settings file named on the command line, loaded on demand."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Settings file (default: $YGG_CONFIG, else ./ygg.toml if present).",
)
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="yggcelery")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, verbose: int) -> None:
    """yggcelery: Beads issues as LLM work on a fleet of GPU hosts, through Celery."""
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(config)


def _register() -> None:
    # Each area's commands, in the order `ygg --help` lists them.
    from yggcelery import commands
    from yggcelery.beads.cli import beads
    from yggcelery.bench.cli import bench
    from yggcelery.demo import demo
    from yggcelery.flower import flower
    from yggcelery.sim.cli import sim

    for command in (commands.loop, commands.worker, commands.beat, commands.status,
                    commands.reconcile):  # fmt: skip
        cli.add_command(command)
    cli.add_command(beads)
    cli.add_command(sim)
    cli.add_command(bench)
    cli.add_command(flower)
    cli.add_command(demo)


_register()


def main() -> None:
    """Entry point: a YggError becomes one clear line on stderr and exit status 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except YggError as exc:
        click.echo(f"ygg: error: {exc}", err=True)
        sys.exit(2)
