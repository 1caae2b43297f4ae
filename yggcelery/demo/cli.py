"""``ygg demo`` (``make demo``): the main job end to end on one machine, on simulated GPU hosts."""

from __future__ import annotations

from pathlib import Path

import click

from yggcelery.cli.context import Context, pass_context
from yggcelery.demo.run import Demo, DemoOptions


@click.command()
@click.option("--keep", is_flag=True, help="Leave the cluster (and Flower) running until Ctrl+C.")
@click.option("--count", type=click.IntRange(1, 1000), default=30, show_default=True,
              help="Issues in the demo workspace.")  # fmt: skip
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0.001, max=10),
    default=0.6,
    show_default=True,
    help="Real seconds per simulated GPU second (0.6: the 30 issues take about 30 s).",
)
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".ygg/demo"),
    show_default=True,
    help="Where the demo's Beads file and logs go (recreated on each run).",
)
@pass_context
def demo(ctx: Context, keep: bool, count: int, time_scale: float, workspace: Path) -> None:
    """Run the whole system locally on a fresh demo Beads workspace, then stop it.

    Starts Redis (free port), three simulated GPU hosts (surtr-reasoning 2 slots, fenrir-chat 3,
    skadi-code 2), a worker per host, the control worker, beat, Flower (generated password) and
    the dispatcher; shows progress live; prints a summary per host, where the results are, and
    Flower's URL and password. Everything it started is stopped at the end, on Ctrl+C and on
    errors.
    """
    options = DemoOptions(
        workspace=workspace.resolve(),
        count=count,
        time_scale=time_scale,
        keep=keep,
        config=ctx.config,
    )
    try:
        Demo(options).run()
    except KeyboardInterrupt:
        click.echo("Interrupted: every process the demo started has been stopped.", err=True)
        raise SystemExit(130) from None
