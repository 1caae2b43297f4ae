"""``BdCliStore``: the Beads protocol through the ``bd`` CLI, for bd 1.x workspaces.

With bd 1.x the truth is a Dolt database and every write must go through bd. Each call runs
``bd <command> --json --actor NAME`` with ``BEADS_DIR`` pinned to the workspace, one bd process at
a time (a thread lock plus a file lock beside the workspace, as bd asks). bd prints indented JSON,
so all of stdout is parsed, in the shapes of every era: plain arrays, single objects, ``null``
for nothing, and current bd's envelope ``{"schema_version": 1, "data": ...}``; issues with or
without current bd's extras (``is_blocked``, ``lease_expires_at``/``heartbeat_at``, the counts
of ``IssueWithCounts``), which stay on the model as unknown fields. ``bd show`` lists
dependencies as the issues depended on (``id`` plus ``dependency_type``); they become
dependency records. A failure is a non-zero exit with ``{"error", "code"}`` on stderr, mapped
onto the error tree by :func:`bd_error`.

``bd ready --json`` decides what is ready and in what order: the store returns its answer as it
is, and never applies :mod:`yggcelery.beads.ready`'s rules on top.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock
from pydantic import ValidationError

from yggcelery.beads.diagnostics import Diagnostic
from yggcelery.beads.model import Comment, Issue
from yggcelery.errors import (
    BdCommandError,
    BeadsError,
    ClaimConflict,
    IssueNotFound,
    PermanentBdError,
    TransientBdError,
)
from yggcelery.settings import SortOrder

log = logging.getLogger(__name__)

_NOT_FOUND_CODES = frozenset({"not_found", "issue_not_found", "no_such_issue"})
_CONFLICT_CODES = frozenset({"claim_conflict", "already_claimed", "conflict"})
_TRANSIENT_CODES = frozenset(
    {"locked", "database_locked", "busy", "timeout", "unavailable", "transient", "lock_timeout"}
)
_TRANSIENT_WORDS = ("database is locked", "timed out", "timeout", "try again", "connection refused")


class BdCliStore:
    """A :class:`~yggcelery.beads.store.BeadsStore` that runs the ``bd`` binary."""

    def __init__(
        self,
        beads_dir: str | os.PathLike[str],
        *,
        binary: str = "bd",
        actor: str,
        timeout_s: float = 60.0,
    ) -> None:
        self.beads_dir = Path(beads_dir)
        self.binary = binary
        self.actor = actor
        self.timeout_s = timeout_s
        self._mutex = threading.Lock()
        self._file_lock = FileLock(str(self.beads_dir.parent / ".ygg-bd.lock"))
        #: The ``.beads`` folder's files as they were after our last bd command.
        self._seen: DirSignature | None = None

    def __repr__(self) -> str:
        return f"<BdCliStore {self.beads_dir} binary={self.binary} actor={self.actor}>"

    @property
    def problems(self) -> list[Diagnostic]:
        """bd validates its own data, so there are never bad lines to report."""
        return []

    def list_issues(self) -> list[Issue]:
        return self.issues("list", "--all", "--limit", "0")

    def changed(self) -> bool:
        """A file directly in the ``.beads`` folder (bd's database, its write-ahead log, its
        JSONL export) has another mtime or size than after our last bd command; False when
        the folder cannot be read."""
        now = _signature(self.beads_dir)
        return now is not None and now != self._seen

    def ready(self, sort: SortOrder = "priority") -> list[Issue]:
        """bd's own answer, in bd's order."""
        return self.issues("ready", "--limit", "0", "--sort", sort)

    def get(self, issue_id: str) -> Issue:
        return self._one(issue_id, "show", issue_id)

    def claim(self, issue_id: str, *, actor: str) -> Issue:
        try:
            return self._one(issue_id, "update", issue_id, "--claim", actor=actor)
        except ClaimConflict:
            issue = self.get(issue_id)
            if issue.assignee == actor and issue.status == "in_progress":
                return issue
            raise

    def set_status(
        self, issue_id: str, status: str, *, note: str | None = None, actor: str
    ) -> Issue:
        args = ["update", issue_id, "--status", status]
        if note:
            args += ["--append-notes", note]
        return self._one(issue_id, *args, actor=actor)

    def reopen(self, issue_id: str, *, note: str | None = None, actor: str) -> Issue:
        args = ["update", issue_id, "--status", "open", "--assignee", ""]
        if note:
            args += ["--append-notes", note]
        return self._one(issue_id, *args, actor=actor)

    def close(self, issue_id: str, *, reason: str, actor: str) -> Issue:
        return self._one(issue_id, "close", issue_id, "--reason", reason, actor=actor)

    def add_comment(self, issue_id: str, text: str, *, author: str) -> Comment:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            data = self.run("comments", "add", issue_id, "-f", fh.name, actor=author)
        if isinstance(data, list):
            data = data[0] if data else {}
        return Comment.model_validate(_strip("comments", data))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """bd commits each command on its own; a batch is just the writes in order."""
        yield

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
        args = ["create", "-p", str(priority), "-t", issue_type]
        optional = {"-l": ",".join(labels), "-d": description, "--design": design,
                    "--acceptance": acceptance_criteria, "--parent": parent or "",
                    "--deps": ",".join(f"blocks:{d}" for d in depends_on)}  # fmt: skip
        if metadata is not None:
            optional["--metadata"] = json.dumps(metadata)
        for flag, value in optional.items():
            if value:
                args += [flag, value]
        return self.issues(*args, "--", title, actor=actor)[0]

    def run(self, *args: str, actor: str | None = None) -> Any:
        """Run one bd command and return its decoded JSON answer (the envelope removed)."""
        command = [self.binary, "--json", "--actor", actor or self.actor, *args]
        env = {**os.environ, "BEADS_DIR": str(self.beads_dir)}
        name = args[0] if args else "bd"
        with self._mutex, self._file_lock:
            try:
                done = subprocess.run(command, capture_output=True, text=True, env=env,
                                      timeout=self.timeout_s, check=False)  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                raise TransientBdError(name, f"no answer in {self.timeout_s:g} s") from exc
            except OSError as exc:
                raise PermanentBdError(name, f"cannot run {self.binary}: {exc}") from exc
            finally:
                self._seen = _signature(self.beads_dir)
        if done.returncode != 0:
            raise bd_error(name, done.stderr, args[1] if len(args) > 1 else "")
        return _decode(name, done.stdout)

    def issues(self, *args: str, actor: str | None = None) -> list[Issue]:
        """Run one bd command and read its answer as issues."""
        return _issues(args[0], self.run(*args, actor=actor))

    def _one(self, issue_id: str, *args: str, actor: str | None = None) -> Issue:
        issues = self.issues(*args, actor=actor)
        if not issues:
            raise IssueNotFound(issue_id, f"bd workspace {self.beads_dir}")
        return issues[0]


def bd_error(command: str, stderr: str, issue_id: str = "") -> BeadsError:
    """The error for a failed bd call, from the ``{"error", "code"}`` object bd prints on stderr."""
    message, code = stderr.strip() or "no message", None
    try:
        body = json.loads(stderr)
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = str(body.get("error") or message)
        code = str(body["code"]) if body.get("code") is not None else None
    lowered = (code or "").lower()
    text = message.lower()
    if lowered in _NOT_FOUND_CODES or "not found" in text:
        return IssueNotFound(issue_id or "?", f"bd ({message})")
    if lowered in _CONFLICT_CODES or "already claimed" in text:
        return ClaimConflict(issue_id or "?", message)
    if lowered in _TRANSIENT_CODES or any(word in text for word in _TRANSIENT_WORDS):
        return TransientBdError(command, message, code=code)
    return PermanentBdError(command, message, code=code)


def _decode(command: str, stdout: str) -> Any:
    try:
        data = json.loads(stdout) if stdout.strip() else []
    except ValueError as exc:
        raise PermanentBdError(command, f"answer is not JSON: {stdout[:200]!r}") from exc
    if isinstance(data, dict) and "data" in data and "schema_version" in data:
        return data["data"]
    return data


def _strip(command: str, obj: Any) -> dict[str, Any]:
    """The object bd answered, without its ``schema_version``."""
    if not isinstance(obj, dict):
        raise PermanentBdError(command, f"expected a JSON object, got {type(obj).__name__}")
    return {k: v for k, v in obj.items() if k != "schema_version"}


def _issues(command: str, data: Any) -> list[Issue]:
    rows = data if isinstance(data, list) else [data]
    return [_issue(command, row) for row in rows if isinstance(row, dict) and "id" in row]


def _issue(command: str, row: dict[str, Any]) -> Issue:
    """One issue of a bd answer, its dependencies as records whatever shape bd gave them."""
    fields = _strip(command, row)
    deps = fields.get("dependencies")
    if isinstance(deps, list):
        fields["dependencies"] = [_dependency(fields["id"], dep) for dep in deps]
    try:
        return Issue.model_validate(fields)
    except ValidationError as exc:
        problem = f"answer has an unusable issue {fields['id']}: {exc.errors()[0]['msg']}"
        raise PermanentBdError(command, problem) from exc


def _dependency(issue_id: str, dep: Any) -> Any:
    """``bd show`` lists an issue depended on, with ``dependency_type``: a record of it."""
    if not isinstance(dep, dict) or "depends_on_id" in dep or "id" not in dep:
        return dep
    kind = dep.get("dependency_type") or dep.get("type") or "blocks"
    return {"issue_id": issue_id, "depends_on_id": dep["id"], "type": kind}


#: (name, mtime in ns, size) of each entry directly in a folder.
DirSignature = frozenset[tuple[str, int, int]]


def _signature(folder: Path) -> DirSignature | None:
    """What :meth:`BdCliStore.changed` compares; None when the folder cannot be read."""
    try:
        with os.scandir(folder) as entries:
            return frozenset(
                (entry.name, (st := entry.stat()).st_mtime_ns, st.st_size) for entry in entries
            )
    except OSError:
        return None


__all__ = ["BdCliStore", "BdCommandError", "bd_error"]
