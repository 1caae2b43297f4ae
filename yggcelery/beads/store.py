"""The one interface the dispatcher and reconciler use for Beads, and how a store is chosen.

Two stores implement it: :class:`~yggcelery.beads.jsonl.JsonlStore` (the embedded default: one
``.beads/issues.jsonl`` file) and :class:`~yggcelery.beads.bdcli.BdCliStore` (the ``bd`` CLI, for
bd 1.x workspaces whose truth is a Dolt database). Every write sets ``updated_at``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from yggcelery.beads.bdcli import BdCliStore
from yggcelery.beads.diagnostics import Diagnostic, Report, log_diagnostics
from yggcelery.beads.jsonl import JsonlStore
from yggcelery.beads.model import Comment, Issue
from yggcelery.beads.ready import RuleSetName
from yggcelery.settings import Settings, SortOrder

log = logging.getLogger(__name__)

#: Files or folders that only bd itself creates in a ``.beads`` folder.
BD_MARKERS = ("embeddeddolt", "beads.db", "config.yaml")


@runtime_checkable
class BeadsStore(Protocol):
    """Read and change Beads issues. Errors come from :mod:`yggcelery.errors`."""

    @property
    def problems(self) -> list[Diagnostic]:
        """Every questionable line of the last read, one diagnostic per line (the rest still
        works); bd validates its own data, so a bd store has none."""
        ...

    def list_issues(self) -> list[Issue]:
        """Every issue, in file order; memory lines are skipped."""
        ...

    def changed(self) -> bool:
        """Whether the data may have changed since this store last read or wrote it, from a
        ``stat`` and no read (the dispatchers look between polls, so new work is seen within
        ``dispatch.watch_s``, not ``poll_s``). False when it cannot tell: the next poll reads."""
        ...

    def ready(self, sort: SortOrder = "priority") -> list[Issue]:
        """The issues ``bd ready`` would return, in ``sort`` order (for a JSONL file, under the
        store's rule set)."""
        ...

    def get(self, issue_id: str) -> Issue:
        """One issue; :class:`IssueNotFound` when absent."""
        ...

    def claim(self, issue_id: str, *, actor: str) -> Issue:
        """Atomically take an open issue: ``in_progress``, ``assignee``, ``started_at``.

        Claiming again by the same actor succeeds; :class:`ClaimConflict` when another assignee
        holds it or it is not open.
        """
        ...

    def set_status(
        self, issue_id: str, status: str, *, note: str | None = None, actor: str
    ) -> Issue:
        """Set any status; ``note`` is appended to ``notes``."""
        ...

    def reopen(self, issue_id: str, *, note: str | None = None, actor: str) -> Issue:
        """Back to ``open``; assignee, ``started_at``, ``closed_at``, ``close_reason`` cleared."""
        ...

    def close(self, issue_id: str, *, reason: str, actor: str) -> Issue:
        """Close with ``reason``; closing a closed issue succeeds and changes nothing."""
        ...

    def add_comment(self, issue_id: str, text: str, *, author: str) -> Comment:
        """Append a comment and return it."""
        ...

    def create(
        self,
        title: str,
        *,
        priority: int = 2,
        issue_type: str = "task",
        labels: Sequence[str] = (),
        description: str = "",
        design: str = "",
        acceptance_criteria: str = "",
        metadata: Any = None,
        depends_on: Sequence[str] = (),
        parent: str | None = None,
        actor: str,
    ) -> Issue:
        """A new open issue; ``depends_on`` are ids that block it; a child of ``parent`` gets
        bd's child id (``parent.N``)."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """A block whose writes land together (one rewrite of a JSONL file; for bd, one
        command each as before)."""
        ...


def is_bd_workspace(beads_dir: Path) -> bool:
    """Whether ``beads_dir`` holds bd's own database, not just an exported JSONL file."""
    return beads_dir.is_dir() and any((beads_dir / marker).exists() for marker in BD_MARKERS)


def open_store(
    settings: Settings,
    *,
    rules: RuleSetName | None = None,
    report: Report | None = log_diagnostics,
) -> BeadsStore:
    """The store ``settings.beads.store`` names; ``auto`` picks bd for a bd workspace with bd on
    PATH, else the JSONL file at ``settings.beads.jsonl_path``, read under ``rules`` (default
    ``settings.beads.rules``) and reporting its bad lines to ``report``."""
    beads = settings.beads
    kind = beads.store
    if kind == "auto":
        has_bd = shutil.which(beads.bd_binary) is not None
        kind = "bd" if has_bd and is_bd_workspace(beads.dir) else "jsonl"
        log.info("beads store: %s (auto, dir %s)", kind, beads.dir)
    if kind == "bd":
        return BdCliStore(beads.dir, binary=beads.bd_binary, actor=beads.actor)
    return JsonlStore(beads.jsonl_path, rules=rules or beads.rules, report=report)
