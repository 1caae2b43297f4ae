"""``JsonlStore``: the embedded default store, one ``.beads/issues.jsonl`` file.

Reads every era of the format (tombstones, ``_type`` memory lines, integer or UUID comment ids,
any offset, ``": "`` separators). A read is cached on the file's ``(mtime_ns, size, inode)``, so
asking again for an unchanged file parses nothing.

A write takes a file lock (``issues.jsonl.lock``), reads the file again and compares its bytes
with what it parsed before (a stat key can repeat within one timestamp tick), edits the one line
it changes and writes the whole file atomically: a temporary file in the same folder, fsync,
rename, fsync of the folder. Every other line keeps its bytes and its place, memory lines and bad
lines included, so two processes closing different issues lose neither update and a claim is
atomic across processes. Writers that ignore the lock (bd itself, an editor) can still race it.

Readiness follows one of bd's rule sets (:mod:`yggcelery.beads.ready`, ``"current"`` unless told).
What is wrong with a line is reported once per issue (or line) and problem, through ``report``
(a log warning unless told otherwise: the CLI prints them itself), and listed by ``problems``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from yggcelery.beads import edits
from yggcelery.beads.diagnostics import Diagnostic, Report, log_diagnostics
from yggcelery.beads.edges import DELETED_STATUS
from yggcelery.beads.model import Comment, Issue, utc_now
from yggcelery.beads.ready import RuleSetName, rules_named
from yggcelery.beads.snapshot import (
    Snapshot,
    StatKey,
    add_line,
    gc_paused,
    parse,
    problems_after_edit,
)
from yggcelery.errors import IssueNotFound
from yggcelery.settings import SortOrder

#: Seconds to wait for another process's write before giving up.
LOCK_TIMEOUT_S = 60.0
_NEW_FILE_MODE = 0o644


class JsonlStore:
    """A :class:`~yggcelery.beads.store.BeadsStore` over one JSONL file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rules: RuleSetName = "current",
        report: Report | None = log_diagnostics,
        lock_timeout_s: float = LOCK_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.rules = rules_named(rules)
        self._report = report
        self._reported: set[tuple[str | bytes, str]] = set()
        self._last_seen: list[Diagnostic] | None = None
        self._file_lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout_s)
        self._mutex = threading.RLock()
        self._snap: Snapshot | None = None
        #: Depth of nested :meth:`batch` blocks, and whether one holds unwritten edits.
        self._batch_depth = 0
        self._dirty = False

    def __repr__(self) -> str:
        snap = self._snap
        issues = len(snap.heads) if snap else "?"
        problems = len(snap.problems) if snap else 0
        return f"<JsonlStore {self.path} rules={self.rules.name} issues={issues} bad={problems}>"

    # -- reads ---------------------------------------------------------------------------------

    def changed(self) -> bool:
        """The file's (mtime, size, inode) differs from the one last read or written here
        (a file that is still missing has not changed)."""
        snap = self._snap
        return snap is None or self._stat_key() != snap.key

    @property
    def problems(self) -> list[Diagnostic]:
        """Every questionable line of the file as last read, dependency checks included."""
        with self._mutex:
            snap = self._snap or self._read()
            return list(snap.diagnostics(dependencies=True))

    def check(self) -> list[Diagnostic]:
        """Build every line's full model too: the complete diagnostics of the file."""
        self.list_issues()
        return self.problems

    def list_issues(self) -> list[Issue]:
        snap = self._read()
        with gc_paused():
            issues = [snap.issue(line) for line in sorted(snap.heads)]
        self._report_new()
        return [issue for issue in issues if issue is not None]

    def ready(self, sort: SortOrder = "priority") -> list[Issue]:
        snap = self._read()
        chosen = snap.readiness(self.rules).pick(sort=sort)
        with gc_paused():
            issues = [snap.issue_by_id(str(head.id)) for head in chosen]
        self._report_new()
        return [issue for issue in issues if issue is not None]

    def get(self, issue_id: str) -> Issue:
        """One issue; :class:`IssueNotFound` when absent, ``BeadsFormatError`` naming the line
        when its line cannot be used."""
        snap = self._read()
        issue = snap.issue_by_id(issue_id)
        self._report_new()
        if issue is not None:
            return issue
        line = snap.index.get(issue_id)
        bad = [d for d in snap.diagnostics() if line is not None and d.line_no == line + 1]
        if bad:
            raise bad[0].as_error()
        raise IssueNotFound(issue_id, str(self.path))

    # -- writes --------------------------------------------------------------------------------

    def claim(self, issue_id: str, *, actor: str) -> Issue:
        return self._edit(issue_id, lambda obj, now: edits.claim(obj, actor, now))

    def set_status(
        self, issue_id: str, status: str, *, note: str | None = None, actor: str
    ) -> Issue:
        return self._edit(issue_id, lambda obj, now: edits.set_status(obj, status, note, now))

    def reopen(self, issue_id: str, *, note: str | None = None, actor: str) -> Issue:
        return self._edit(issue_id, lambda obj, now: edits.reopen(obj, note))

    def close(self, issue_id: str, *, reason: str, actor: str) -> Issue:
        return self._edit(issue_id, lambda obj, now: edits.close(obj, reason, now))

    def add_comment(self, issue_id: str, text: str, *, author: str) -> Comment:
        added: list[dict[str, Any]] = []

        def add(obj: edits.Obj, now: datetime) -> bool:
            added.append(edits.comment(obj, text, author, now))
            return True

        self._edit(issue_id, add)
        return Comment.model_validate(added[0])

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
        fields = {"priority": priority, "issue_type": issue_type, "description": description,
                  "design": design, "acceptance_criteria": acceptance_criteria,
                  "metadata": metadata}  # fmt: skip
        with self._writing() as snap:
            for target in [*depends_on, *([parent] if parent else [])]:
                if target not in snap.index:
                    raise IssueNotFound(target, str(self.path))
            if parent:
                issue_id = edits.child_id(parent, snap.index)
            else:
                issue_id = edits.new_id(edits.id_prefix(snap.index), title, snap.index)
            obj = edits.new_issue(issue_id, title, fields=fields, labels=labels,
                                  depends_on=depends_on, parent=parent, actor=actor,
                                  now=utc_now())  # fmt: skip
            lines = list(snap.lines)
            at = len(lines) - 1 if lines and lines[-1] == b"" else len(lines)
            lines.insert(at, edits.dumps(obj))
            self._commit(snap, lines, changed=at, inserted=True)
        return self.get(issue_id)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Apply the writes inside the block under one lock hold and one atomic rewrite.

        Other processes see all of them or none; edits made before an exception are still
        written (each was valid on its own). Reconcile closes a whole pass's results this way,
        and the dispatcher claims a whole poll's issues, so the file is fsync'd once, not per edit.
        """
        with self._mutex, self._file_lock:
            if not self._batch_depth:
                self._snap = self._locked_snapshot()
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0 and self._dirty and self._snap is not None:
                    self._dirty = False
                    self._write_atomically(b"\n".join(self._snap.lines))
                    self._snap.key = self._stat_key()

    # -- machinery -----------------------------------------------------------------------------

    def _edit(self, issue_id: str, change: Callable[[edits.Obj, datetime], bool]) -> Issue:
        """Apply ``change`` to the issue's line under the lock; write only if it changed."""
        with self._writing() as snap:
            line = snap.index.get(issue_id)
            if line is None or snap.heads[line].status == DELETED_STATUS:
                raise IssueNotFound(issue_id, str(self.path))
            raw = snap.lines[line]
            obj = json.loads(raw)
            now = utc_now()
            if change(obj, now):
                edits.touch(obj, now)
                ending = raw[len(raw.rstrip(b"\r")) :]
                new_raw = edits.dumps(obj) + ending
                if self._batch_depth:
                    self._replace_in_batch(snap, line, new_raw)
                else:
                    lines = list(snap.lines)
                    lines[line] = new_raw
                    self._commit(snap, lines, changed=line)
        return self.get(issue_id)

    def _replace_in_batch(self, snap: Snapshot, number: int, raw: bytes) -> None:
        """Inside a batch the snapshot is ours alone (we hold the lock): change it in place
        instead of copying every line and head for each edit; the batch writes it once."""
        snap.lines[number] = raw
        old = snap.heads.pop(number, None)
        if old is not None and snap.index.get(str(old.id)) == number:
            del snap.index[str(old.id)]
        snap.models.pop(number, None)
        snap.problems.pop(number, None)
        snap.reset_derived()
        snap.key = None
        add_line(snap, number, raw)
        self._dirty = True

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Snapshot]:
        """Hold both locks and yield the file exactly as it is on disk now."""
        with self._mutex:
            if self._batch_depth and self._snap is not None:
                yield self._snap  # the batch holds the file lock: memory is the newest version
                return
            with self._file_lock:
                self._snap = self._locked_snapshot()
                yield self._snap

    def _locked_snapshot(self) -> Snapshot:
        """The file as it is on disk now (the caller holds the file lock)."""
        content = self._read_bytes()
        snap = self._snap
        if snap is None or not _same_content(snap, content):
            snap = parse(self.path, content, self._stat_key())
        return snap

    def _commit(
        self, snap: Snapshot, lines: list[bytes], *, changed: int, inserted: bool = False
    ) -> None:
        """Write ``lines`` atomically (at the end of a batch, inside one) and cache them as the
        new snapshot, re-decoding one line."""
        if self._batch_depth:
            self._dirty = True
            key = None
        else:
            self._write_atomically(b"\n".join(lines))
            key = self._stat_key()
        fresh = Snapshot(path=self.path, key=key, lines=lines)

        def moved(number: int) -> int:
            return number + 1 if inserted and number >= changed else number

        for number, head in snap.heads.items():
            if inserted or number != changed:
                fresh.heads[moved(number)] = head
                if number in snap.models:
                    fresh.models[moved(number)] = snap.models[number]
        fresh.index = {str(head.id): number for number, head in fresh.heads.items()}
        fresh.problems = problems_after_edit(snap, changed, inserted=inserted)
        add_line(fresh, changed, lines[changed])
        self._snap = fresh

    def _write_atomically(self, data: bytes) -> None:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        try:
            mode = self.path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = _NEW_FILE_MODE
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _report_new(self) -> None:
        """Hand the diagnostics not reported yet to ``report``: once per issue (or line) and
        problem, however often the file is read or rewritten."""
        snap = self._snap
        if self._report is None or snap is None or not (snap.problems or snap.has_graph):
            return
        current = snap.diagnostics()
        if current is self._last_seen:  # nothing new since the last look
            return
        self._last_seen = current
        fresh = []
        for diagnostic in current:
            where = diagnostic.issue_id or snap.lines[diagnostic.line_no - 1]
            new = tuple(p for p in diagnostic.problems if (where, p.text) not in self._reported)
            if new:
                self._reported.update((where, p.text) for p in new)
                fresh.append(dataclasses.replace(diagnostic, problems=new))
        if fresh:
            self._report(fresh)

    def _read(self) -> Snapshot:
        """The cached snapshot, or a new one if the file changed since it was read."""
        with self._mutex:
            if self._batch_depth and self._snap is not None:
                return self._snap
            key = self._stat_key()
            if self._snap is None or key is None or self._snap.key != key:
                self._snap = parse(self.path, self._read_bytes(), key)
            return self._snap

    def _read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def _stat_key(self) -> StatKey | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)


def _same_content(snap: Snapshot, content: bytes) -> bool:
    """Whether ``content`` is what ``snap`` was parsed from (lengths first: no copy when not)."""
    size = sum(map(len, snap.lines)) + len(snap.lines) - 1
    return size == len(content) and snap.content == content
