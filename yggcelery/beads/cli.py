"""``ygg beads``: look at the queue and change one issue by hand.

    ygg beads ready [--sort priority|hybrid|oldest] [--json]
    ygg beads show ID | close ID --reason TEXT | block ID --reason TEXT | reopen ID

Every command takes ``--beads-file FILE`` to work on that JSONL file instead of the configured
store, and ``--json`` for machine-readable output. Bad lines of the file are reported on stderr
(file, line, problem) while the rest still works.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from yggcelery.beads.jsonl import JsonlStore
from yggcelery.beads.model import Issue
from yggcelery.beads.store import BeadsStore, open_store
from yggcelery.cli import Context, pass_context

#: Fields every JSON answer carries, whatever else the issue has.
SUMMARY_FIELDS = ("id", "title", "priority", "status", "issue_type", "labels", "assignee")
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
@pass_context
def ready_command(ctx: Context, beads_file: Path | None, as_json: bool, sort: str | None) -> None:
    """List the issues ready for work, in dispatch order."""
    store = _store(ctx, beads_file)
    issues = store.ready(sort or ctx.settings.beads.sort)  # type: ignore[arg-type]
    _report_problems(store)
    if as_json:
        click.echo(json.dumps([_as_json(issue) for issue in issues], indent=2))
    else:
        _table(issues, title=f"{len(issues)} ready")


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
    _print_issue(store, issue, as_json)


@beads.command("reopen")
@_common
@click.argument("issue_id")
@pass_context
def reopen_command(ctx: Context, beads_file: Path | None, as_json: bool, issue_id: str) -> None:
    """Put an issue back to open, unassigned."""
    store = _store(ctx, beads_file)
    _print_issue(store, store.reopen(issue_id, actor=ctx.settings.beads.actor), as_json)


def _store(ctx: Context, beads_file: Path | None) -> BeadsStore:
    return JsonlStore(beads_file) if beads_file is not None else open_store(ctx.settings)


def _report_problems(store: BeadsStore) -> None:
    for problem in store.problems:
        click.echo(f"warning: {problem}", err=True)


def _as_json(issue: Issue) -> dict[str, Any]:
    data = issue.model_dump(mode="json", exclude_defaults=True)
    return {**{key: getattr(issue, key) for key in SUMMARY_FIELDS}, **data}


def _print_issue(store: BeadsStore, issue: Issue, as_json: bool) -> None:
    _report_problems(store)
    if as_json:
        click.echo(json.dumps(_as_json(issue), indent=2))
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
