"""One read of an ``issues.jsonl`` file: its lines as bytes, and what each issue line says.

Loading must be fast on 100,000 issues, so a line is first decoded by msgspec into a
:class:`Head` that holds only what readiness and writes need (everything else is skipped at C
speed); the full pydantic :class:`~yggcelery.beads.model.Issue` is built only when asked for, and
kept. Lines are kept as bytes, split on ``\\n`` and never re-encoded, so a rewrite can keep every
line it did not change byte for byte; a line that cannot be used becomes a
:class:`~yggcelery.errors.BeadsFormatError` and stays in ``lines`` as it was.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from pydantic import ValidationError

from yggcelery.beads.model import Issue
from yggcelery.beads.ready import Readiness
from yggcelery.errors import BeadsFormatError

log = logging.getLogger(__name__)

#: Stat fields that identify one version of the file for the read cache.
StatKey = tuple[int, int, int]
_LOGGED_PROBLEMS = 20


class DepHead(msgspec.Struct, gc=False):
    """The part of a dependency that readiness reads; ``metadata`` stays raw JSON until a
    ``waits-for`` gate needs it."""

    depends_on_id: str
    type: str = "blocks"
    metadata: msgspec.Raw = msgspec.Raw(b"null")


class Head(msgspec.Struct, gc=False):
    """The light record of one line: what readiness, the index and writes read, nothing more.

    Fields that bd never writes as ``null`` are typed without ``None``, so a null there makes the
    line a problem here as it would in the full model.
    """

    id: str | None = None
    title: str | None = None
    status: str = "open"
    priority: int = 2
    issue_type: str = "task"
    created_at: datetime | None = None
    defer_until: datetime | None = None
    pinned: bool = False
    ephemeral: bool = False
    dependencies: list[DepHead] | None = None
    kind: str | None = msgspec.field(default=None, name="_type")


_DECODER = msgspec.json.Decoder(Head, strict=False)


@dataclass
class Snapshot:
    """The file as read at one moment; replaced, never edited in place, when the file changes."""

    path: Path
    key: StatKey | None
    lines: list[bytes]
    heads: dict[int, Head] = field(default_factory=dict)
    #: Issue id to line index (the last line wins when an id repeats).
    index: dict[str, int] = field(default_factory=dict)
    problems: list[BeadsFormatError] = field(default_factory=list)
    models: dict[int, Issue | None] = field(default_factory=dict)
    _readiness: Readiness[Any] | None = None

    @property
    def readiness(self) -> Readiness[Any]:
        """The clock-independent part of ``ready()``, computed once per snapshot."""
        if self._readiness is None:
            # Heads carry bd's defaults for absent fields, which is all ReadyFacts asks.
            self._readiness = Readiness(list(self.heads.values()))
        return self._readiness

    def reset_readiness(self) -> None:
        """Forget the computed readiness (after a line changed in place)."""
        self._readiness = None

    @property
    def content(self) -> bytes:
        return b"\n".join(self.lines)

    def issue(self, line: int) -> Issue | None:
        """The full model of line ``line`` (0-based), or ``None`` when it does not validate."""
        if line not in self.models:
            self.models[line] = self._validate(line)
        return self.models[line]

    def issue_by_id(self, issue_id: str) -> Issue | None:
        line = self.index.get(issue_id)
        return None if line is None else self.issue(line)

    def _validate(self, line: int) -> Issue | None:
        try:
            return Issue.model_validate_json(self.lines[line])
        except ValidationError as exc:
            problem = BeadsFormatError(self.path, line + 1, _first_error(exc))
            self.problems.append(problem)
            log.warning("%s", problem)
            return None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects that hold no cycles:
    otherwise it runs hundreds of times over the growing heap (about half the load time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse(path: Path, content: bytes, key: StatKey | None) -> Snapshot:
    """Split ``content`` into lines and decode each issue line's :class:`Head`."""
    snap = Snapshot(path=path, key=key, lines=content.split(b"\n"))
    decode, heads, index = _DECODER.decode, snap.heads, snap.index
    with gc_paused():
        for number, raw in enumerate(snap.lines):
            if not raw or raw.isspace():
                continue
            try:
                head = decode(raw)
            except (msgspec.DecodeError, ValueError):
                add_line(snap, number, raw)  # records the problem
                continue
            issue_id = head.id
            if (
                head.kind in (None, "issue")
                and issue_id
                and head.title is not None
                and issue_id not in index
            ):
                heads[number] = head  # the common case, kept inline for speed
                index[issue_id] = number
            else:
                add_line(snap, number, raw)
    _log_problems(snap)
    return snap


def add_line(snap: Snapshot, number: int, raw: bytes) -> None:
    """Decode line ``number`` into ``snap``: a head, or a problem, or nothing (memory lines)."""
    try:
        head = _DECODER.decode(raw)
    except (msgspec.DecodeError, ValueError) as exc:
        snap.problems.append(BeadsFormatError(snap.path, number + 1, _decode_problem(exc)))
        return
    if head.kind not in (None, "issue"):
        return
    if not head.id or head.title is None:
        missing = "id" if not head.id else "title"
        snap.problems.append(
            BeadsFormatError(snap.path, number + 1, f"issue line has no {missing}")
        )
        return
    earlier = snap.index.get(head.id)
    if earlier is not None:
        problem = f"duplicate id {head.id}; line {number + 1} is used"
        snap.problems.append(BeadsFormatError(snap.path, earlier + 1, problem))
        del snap.heads[earlier]
    snap.heads[number] = head
    snap.index[head.id] = number


def _decode_problem(exc: Exception) -> str:
    text = str(exc)
    if "JSON" in text or "truncated" in text or "trailing" in text.lower():
        return f"invalid JSON ({text})"
    return f"unusable issue ({text})"


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(line)"
    return f"invalid issue: {where}: {error['msg']}"


def _log_problems(snap: Snapshot) -> None:
    for problem in snap.problems[:_LOGGED_PROBLEMS]:
        log.warning("%s", problem)
    if len(snap.problems) > _LOGGED_PROBLEMS:
        log.warning("%s: %d more bad lines", snap.path, len(snap.problems) - _LOGGED_PROBLEMS)
