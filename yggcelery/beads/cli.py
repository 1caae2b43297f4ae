"""``ygg beads``: look at the queue, add to it, check its file, change one issue by hand.

    ygg beads ready [--sort priority|hybrid|oldest] [--rules current|1.0] [--json]
    ygg beads create TITLE [-p N] [-t TYPE] [-l a,b] [-d TEXT] [--parent ID] [--deps ID,...]
    ygg beads check
    ygg beads show ID | close ID --reason TEXT | block ID --reason TEXT | reopen ID

Every command takes ``--beads-file FILE`` to work on that JSONL file instead of the configured
store, and ``--json`` for machine-readable output: an object with the answer (``issues`` or
``issue``) and ``diagnostics``. Questionable lines of the file are reported once each, with file,
line and what is wrong: on stderr, and in ``diagnostics``. ``ready`` checks every line and the
dependencies; ``check`` also builds every line's full model, prints only the diagnostics, and
exits 1 when bd would refuse the file.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import redis
from rich.console import Console
from rich.table import Table

from yggcelery.beads.diagnostics import Diagnostic
from yggcelery.beads.jsonl import JsonlStore
from yggcelery.beads.model import PRIORITY_RANGE, Issue
from yggcelery.beads.ready import RULE_SETS, rules_named
from yggcelery.beads.store import BeadsStore, open_store
from yggcelery.cancel import cancel_bead
from yggcelery.cli.context import Context, pass_context
from yggcelery.ledger import Ledger

#: Fields every JSON answer carries, whatever else the issue has.
SUMMARY_FIELDS = ("id", "title", "priority", "status", "issue_type", "labels", "assignee")
#: bd's limit on a title.
MAX_TITLE = 500
#: Exit status of ``check`` when bd would refuse the file.
EXIT_REFUSED = 1
C = TypeVar("C", bound=Callable[..., Any])


def _common(command: C) -> C:
    command = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)
    return click.option(
        "--beads-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Use this issues.jsonl instead of the configured store.",
    )(command)


@click.group()
def beads() -> None:
    """Look at and change the Beads issue queue."""


@beads.command("ready")
@_common
@click.option("--sort", type=click.Choice(["priority", "hybrid", "oldest"]), default=None)
@click.option(
    "--rules",
    type=click.Choice(list(RULE_SETS)),
    default=None,
    help="bd's readiness rules for a JSONL file (default: beads.rules, current).",
)
@pass_context
def ready_command(
    ctx: Context, beads_file: Path | None, as_json: bool, sort: str | None, rules: str | None
) -> None:
    """List the issues ready for work, in dispatch order."""
    store = _store(ctx, beads_file, rules)
    sort = sort or ctx.settings.beads.sort
    issues = store.ready(sort)  # type: ignore[arg-type]
    found = _report(store)
    if as_json:
        decided_by = store.rules.name if isinstance(store, JsonlStore) else "bd"
        _echo_json({"rules": decided_by, "sort": sort, "issues": [_as_json(i) for i in issues],
                    "diagnostics": [d.as_json() for d in found]})  # fmt: skip
    else:
        _table(issues, title=f"{len(issues)} ready")


@beads.command("create")
@_common
@click.argument("title")
@click.option("-p", "--priority", type=click.IntRange(0, PRIORITY_RANGE[-1]), default=2,
              show_default=True, help="0 is the most urgent.")  # fmt: skip
@click.option("-t", "--type", "issue_type", default="task", show_default=True,
              help="Issue type: task, bug, feature, epic, chore, ...")  # fmt: skip
@click.option("-l", "--labels", default="", help="Comma-separated labels.")
@click.option("-d", "--description", default="", help="What is to be done.")
@click.option("--parent", default=None, help="Make it a child of this issue (id parent.N).")
@click.option("--deps", default="", help="Comma-separated ids of issues that block it.")
@pass_context
def create_command(
    ctx: Context,
    *,
    beads_file: Path | None,
    as_json: bool,
    title: str,
    priority: int,
    issue_type: str,
    labels: str,
    description: str,
    parent: str | None,
    deps: str,
) -> None:
    """Add an open issue, with bd's flags and ids (prefix-hash, parent.N for a child)."""
    if not title.strip() or len(title) > MAX_TITLE:
        raise click.BadParameter(f"must be 1 to {MAX_TITLE} characters", param_hint="TITLE")
    store = _store(ctx, beads_file)
    issue = store.create(
        title, priority=priority, issue_type=issue_type, labels=_split(labels),
        description=description, parent=parent, depends_on=_split(deps),
        actor=ctx.settings.beads.actor,
    )  # fmt: skip
    _print_issue(store, issue, as_json)


@beads.command("check")
@_common
@pass_context
def check_command(ctx: Context, beads_file: Path | None, as_json: bool) -> None:
    """Print what is wrong with the file's lines; exit 1 when bd would refuse the file."""
    path = beads_file or ctx.settings.beads.jsonl_path
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such file (give --beads-file FILE)", str(path))
    store = JsonlStore(path, rules=ctx.settings.beads.rules, report=None)
    found = store.check()
    refused = any(d.refused for d in found)
    if as_json:
        _echo_json({"file": str(path), "refused": refused,
                    "diagnostics": [d.as_json() for d in found]})  # fmt: skip
    else:
        for diagnostic in found:
            click.echo(f"{diagnostic.severity}: {diagnostic}")
        click.echo(_verdict(path, found))
    if refused:
        raise click.exceptions.Exit(EXIT_REFUSED)


@beads.command("show")
@_common
@click.argument("issue_id")
@pass_context
def show_command(ctx: Context, beads_file: Path | None, as_json: bool, issue_id: str) -> None:
    """Show one issue."""
    store = _store(ctx, beads_file)
    _print_issue(store, store.get(issue_id), as_json)


@beads.command("close")
@_common
@click.argument("issue_id")
@click.option("--reason", required=True, help="Why it is closed.")
@pass_context
def close_command(
    ctx: Context, beads_file: Path | None, as_json: bool, issue_id: str, reason: str
) -> None:
    """Close an issue with a reason."""
    store = _store(ctx, beads_file)
    issue = store.close(issue_id, reason=reason, actor=ctx.settings.beads.actor)
    _stop_running_attempt(ctx, issue_id)
    _print_issue(store, issue, as_json)


@beads.command("block")
@_common
@click.argument("issue_id")
@click.option("--reason", required=True, help="Why it is blocked (appended to its notes).")
@pass_context
def block_command(
    ctx: Context, beads_file: Path | None, as_json: bool, issue_id: str, reason: str
) -> None:
    """Mark an issue blocked, with the reason in its notes."""
    store = _store(ctx, beads_file)
    issue = store.set_status(issue_id, "blocked", note=reason, actor=ctx.settings.beads.actor)
    _stop_running_attempt(ctx, issue_id)
    _print_issue(store, issue, as_json)


@beads.command("reopen")
@_common
@click.argument("issue_id")
@pass_context
def reopen_command(ctx: Context, beads_file: Path | None, as_json: bool, issue_id: str) -> None:
    """Put an issue back to open, unassigned."""
    store = _store(ctx, beads_file)
    issue = store.reopen(issue_id, actor=ctx.settings.beads.actor)
    _stop_running_attempt(ctx, issue_id)
    _print_issue(store, issue, as_json)


def _stop_running_attempt(ctx: Context, issue_id: str) -> None:
    """A person changed the issue: if an attempt of it runs now, its worker drops the model
    call at once (:mod:`yggcelery.cancel`). Without Redis, reconcile does it when it can."""
    try:
        task = cancel_bead(Ledger.from_settings(ctx.settings), issue_id)
    except redis.RedisError:
        return
    if task is not None:
        click.echo(f"{issue_id}: attempt {task} is being stopped on its worker", err=True)


def _store(ctx: Context, beads_file: Path | None, rules: str | None = None) -> BeadsStore:
    """The store to work on; it reports nothing itself (the command reports, once)."""
    name = rules_named(rules).name if rules else ctx.settings.beads.rules
    if beads_file is None:
        return open_store(ctx.settings, rules=name, report=None)
    return JsonlStore(beads_file, rules=name, report=None)


def _report(store: BeadsStore) -> list[Diagnostic]:
    """Print each questionable line on stderr once; return them for the JSON answer."""
    found = store.problems
    for diagnostic in found:
        click.echo(f"warning: {diagnostic}", err=True)
    return found


def _verdict(path: Path, found: list[Diagnostic]) -> str:
    if not found:
        return f"{path}: no problems"
    refused = sum(d.refused for d in found)
    verdict = "bd would refuse the file" if refused else "bd would take the file"
    return f"{path}: {len(found)} lines with problems, {refused} that bd refuses ({verdict})"


def _split(text: str) -> list[str]:
    """``a, b,,a`` as bd reads a list flag: trimmed, empties and repeats dropped."""
    return list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def _as_json(issue: Issue) -> dict[str, Any]:
    """The summary fields, every field that is not a default, and each dependency whole (its
    type too, when that is the default ``blocks``)."""
    data = issue.model_dump(mode="json", exclude_defaults=True)
    if issue.dependencies:
        data["dependencies"] = [d.model_dump(mode="json", exclude_none=True)
                                for d in issue.dependencies]  # fmt: skip
    return {**{key: getattr(issue, key) for key in SUMMARY_FIELDS}, **data}


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2))


def _print_issue(store: BeadsStore, issue: Issue, as_json: bool) -> None:
    found = _report(store)
    if as_json:
        _echo_json({"issue": _as_json(issue), "diagnostics": [d.as_json() for d in found]})
        return
    _table([issue], title=issue.title)
    for name in ("description", "notes", "close_reason"):
        value = getattr(issue, name)
        if value:
            click.echo(f"\n{name}:\n{value}")


def _table(issues: list[Issue], *, title: str) -> None:
    table = Table(title=title)
    for column in ("id", "p", "type", "status", "assignee", "title", "labels"):
        table.add_column(column, overflow="fold")
    for issue in issues:
        table.add_row(
            issue.id, str(issue.priority), issue.issue_type, issue.status, issue.assignee or "",
            issue.title, ",".join(issue.labels),
        )  # fmt: skip
    Console().print(table)
