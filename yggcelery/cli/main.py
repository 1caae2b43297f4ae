"""The ``ygg`` command: the root group, every room's commands, and the one error path.

ygg loop [--legacy|--async]   run a dispatcher (Celery by default)
ygg worker HOST               the Celery worker for one host (its queue, its slots)
ygg beat | flower | status | reconcile [--once]
ygg beads ready|show|close|block|reopen|...
ygg sim | demo | bench
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from yggcelery.beads.cli import beads
from yggcelery.bench.cli import bench
from yggcelery.cli import services
from yggcelery.cli.capacity import doctor, tune_command
from yggcelery.cli.context import Context
from yggcelery.cli.errors import EXIT_ERROR, one_line
from yggcelery.cli.flower import flower
from yggcelery.demo.cli import demo
from yggcelery.sim.cli import sim


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
    ctx.ensure_object(Context).config = config


# Each room's commands, in the order `ygg --help` lists them.
for _command in (services.loop, services.worker, services.beat, services.status,
                 services.reconcile, doctor, tune_command, beads, sim, bench, flower,
                 demo):  # fmt: skip
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected failure is one ``ygg: error:`` line and exit status 2."""
    state = Context()
    try:
        with cli.make_context("ygg", sys.argv[1:] if argv is None else argv, obj=state) as ctx:
            state = ctx.obj
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except Exception as exc:
        line = one_line(exc, state.loaded)
        if line is None:
            raise
        click.echo(f"ygg: error: {line}", err=True)
        sys.exit(EXIT_ERROR)
