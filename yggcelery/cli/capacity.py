"""``ygg doctor`` and ``ygg tune``: what the fleet really is, against what ``ygg.toml`` says.

``ygg doctor`` is a new user's first command on a real fleet: one line per check, each failure
with what to do, exit status 0 only when every check passes. ``ygg tune`` probes each host's
model server and suggests its ``slots``; ``--write FILE`` edits only those keys.
"""

from __future__ import annotations

from pathlib import Path

import click
import redis

from yggcelery.beads import open_store
from yggcelery.capacity import doctor as checks
from yggcelery.capacity.check import Check, all_ok, failed
from yggcelery.capacity.tomledit import write_slots
from yggcelery.capacity.tune import toml_lines, tune
from yggcelery.celery_app import make_app
from yggcelery.cli.context import Context, pass_context
from yggcelery.errors import YggError
from yggcelery.settings import Settings
from yggcelery.tasks import BEAT_PASS_KEY


def beat_check(settings: Settings) -> Check:
    """Beat is alive: its reconcile job ran recently (``tasks.reconcile`` records each pass)."""
    try:
        client = redis.Redis.from_url(settings.result_backend, socket_timeout=2)
        raw = client.get(BEAT_PASS_KEY)
    except redis.RedisError as exc:
        return failed("beat", f"cannot read the last reconcile pass: {exc}", "start Redis")
    last = float(raw) if raw else None
    every_s = settings.dispatch.reconcile_every_s
    return checks.check_beat(last_pass_at=last, reconcile_every_s=every_s)


def beads_check(settings: Settings) -> Check:
    """The Beads store opens and reads (and which store it is)."""
    try:
        store = open_store(settings)
        store.ready(sort=settings.beads.sort)
    except (YggError, OSError) as exc:
        return checks.check_beads(store=str(settings.beads.dir), error=str(exc))
    return checks.check_beads(store=repr(store))


@click.command()
@click.option("--no-measure", is_flag=True, help="Do not measure Ollama's parallelism.")
@pass_context
def doctor(ctx: Context, no_measure: bool) -> None:
    """Check the whole fleet: broker, backend, each host's server and model, parallelism vs
    slots, workers, beat, Beads, the cloud key. Exit status 0 only when all pass."""
    settings = ctx.settings
    results = checks.run(
        settings,
        app=make_app(settings),
        measure=not no_measure,
        extra=[lambda: beat_check(settings), lambda: beads_check(settings)],
    )
    for check in results:
        click.echo(str(check))
    if not all_ok(results):
        raise SystemExit(1)


@click.command(name="tune")
@click.option(
    "--write",
    "write_to",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Set the suggested slots in this ygg.toml (only the slots keys change).",
)
@click.option("--no-measure", is_flag=True, help="Do not measure Ollama's parallelism.")
@pass_context
def tune_command(ctx: Context, write_to: Path | None, no_measure: bool) -> None:
    """Per host: what its model server runs (kind, model, VRAM, context, parallel slots) against
    the configured slots, a suggested `slots`, and the ygg.toml lines."""
    tunings = tune(ctx.settings, measure=not no_measure)
    for tuning in tunings:
        click.echo(tuning.line())
    lines = toml_lines(tunings)
    if lines:
        click.echo("\n" + lines.rstrip())
    if write_to is not None:
        changes = {t.host: t.suggested for t in tunings if t.suggested}
        old = write_slots(write_to, changes)
        for host, slots in changes.items():
            click.echo(f"{write_to}: hosts.{host}.slots {old.get(host)} -> {slots}")
