"""One read of an ``issues.jsonl`` file: its lines as bytes, and what each issue line says.

Loading must be fast on 100,000 issues, so a line is first decoded by msgspec into a
:class:`Head` that holds only what readiness, the line checks and writes need (everything else
is skipped at C speed); the full pydantic :class:`~yggcelery.beads.model.Issue` is built only
when asked for, and kept. Lines are kept as bytes, split on ``\\n`` and never re-encoded, so a
rewrite can keep every line it did not change byte for byte: bad lines, memory lines and a
``{"_schema": ...}`` header stay as they were.

What is wrong with a line is found in three places, and each line is one
:class:`~yggcelery.beads.diagnostics.Diagnostic` however many it has: the line checks, at
parse time; the dependency checks, with the graph (:attr:`Snapshot.graph`); and, for a line the
light record accepts but the full model does not, when its model is first built.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from pydantic import ValidationError

from yggcelery.beads import diagnostics as checks
from yggcelery.beads.diagnostics import Diagnostic, Problem
from yggcelery.beads.edges import ImportedGraph
from yggcelery.beads.model import MISSING_PRIORITY, Issue
from yggcelery.beads.ready import Readiness, Rules

#: Stat fields that identify one version of the file for the read cache.
StatKey = tuple[int, int, int]


class DepHead(msgspec.Struct, gc=False):
    """The part of a dependency that readiness reads; ``metadata`` stays raw JSON until a
    ``waits-for`` gate needs it."""

    depends_on_id: str
    type: str = "blocks"
    metadata: msgspec.Raw = msgspec.Raw(b"null")


class Head(msgspec.Struct, gc=False):
    """The light record of one line: what readiness, the checks and writes read, nothing more.

    Fields that bd never writes as ``null`` are typed without ``None``, so a null there makes the
    line a problem here as it would in the full model. Of ``closed_at`` only its presence
    matters, so it stays a string. ``labels`` stay raw JSON until a rule asks about them (only
    for open issues, and only under rules that exclude a label): 100,000 lists of strings cost
    memory and garbage-collector time that the load does not need.
    """

    id: str | None = None
    title: str | None = None
    status: str = "open"
    priority: int = MISSING_PRIORITY
    issue_type: str = "task"
    created_at: datetime | None = None
    defer_until: datetime | None = None
    closed_at: str | None = None
    pinned: bool = False
    ephemeral: bool = False
    wisp: bool = False
    raw_labels: msgspec.Raw = msgspec.field(default=msgspec.Raw(b"null"), name="labels")
    dependencies: list[DepHead] | None = None
    kind: str | None = msgspec.field(default=None, name="_type")
    schema: str | None = msgspec.field(default=None, name="_schema")

    def has_any_label(self, names: AbstractSet[str]) -> bool:
        """Whether one of ``names`` is among the labels. Labels that are not a list of strings
        count as none here; the full model refuses the line and it is reported."""
        if len(self.raw_labels) <= len(b"null"):  # null, [] or absent
            return False
        try:
            labels = _LABELS.decode(self.raw_labels)
        except msgspec.DecodeError:
            return False
        return not names.isdisjoint(labels or ())


_DECODER = msgspec.json.Decoder(Head, strict=False)
_LABELS = msgspec.json.Decoder(list[str] | None)


@dataclass
class Snapshot:
    """The file as read at one moment; replaced when the file changes (a batch edits it in
    place, resetting what it derived)."""

    path: Path
    key: StatKey | None
    lines: list[bytes]
    heads: dict[int, Head] = field(default_factory=dict)
    #: Issue id to line index (the last line wins when an id repeats).
    index: dict[str, int] = field(default_factory=dict)
    #: What the line checks and the full model found, by line index.
    problems: dict[int, list[Problem]] = field(default_factory=dict)
    models: dict[int, Issue | None] = field(default_factory=dict)
    # Heads are IssueFacts but for ``id: str | None`` (always set on a head): typed Any here.
    _graph: ImportedGraph[Any] | None = None
    _readiness: dict[str, Readiness[Any]] = field(default_factory=dict)
    _diagnostics: list[Diagnostic] | None = None

    @property
    def graph(self) -> ImportedGraph[Any]:
        """The issues and the edges bd's import keeps, computed once per snapshot."""
        if self._graph is None:
            with gc_paused():
                self._graph = ImportedGraph(self.heads[n] for n in sorted(self.heads))
            self._diagnostics = None
        return self._graph

    def readiness(self, rules: Rules) -> Readiness[Any]:
        """The clock-independent part of ``ready()`` under ``rules``, computed once."""
        if rules.name not in self._readiness:
            graph = self.graph
            with gc_paused():
                self._readiness[rules.name] = Readiness(graph, rules)
        return self._readiness[rules.name]

    def reset_derived(self) -> None:
        """Forget the graph and readiness (after a line changed in place)."""
        self._graph = None
        self._readiness.clear()
        self._diagnostics = None

    @property
    def has_graph(self) -> bool:
        return self._graph is not None

    @property
    def content(self) -> bytes:
        return b"\n".join(self.lines)

    def add_problem(self, line: int, problem: Problem) -> None:
        self.problems.setdefault(line, []).append(problem)
        self._diagnostics = None

    def diagnostics(self, *, dependencies: bool = False) -> list[Diagnostic]:
        """One diagnostic per questionable line found so far, in file order. The dependency
        checks come with the graph: computed for them when ``dependencies``, else only if some
        read already did."""
        graph = self.graph if dependencies else self._graph
        if self._diagnostics is None:
            found = {line: list(problems) for line, problems in self.problems.items()}
            if graph is not None:
                for edge in graph.dropped:
                    line = self.index[edge.issue_id]
                    found.setdefault(line, []).append(checks.edge_problem(edge))
            self._diagnostics = [
                Diagnostic(self.path, line + 1, tuple(found[line]), self._issue_id(line))
                for line in sorted(found)
            ]
        return self._diagnostics

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
            self.add_problem(line, checks.model_problem(exc))
            return None

    def _issue_id(self, line: int) -> str | None:
        head = self.heads.get(line)
        if head is not None:
            return head.id
        with contextlib.suppress(msgspec.DecodeError, ValueError):
            return _DECODER.decode(self.lines[line]).id
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
    """Split ``content`` into lines, decode each issue line's :class:`Head` and check it."""
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
                add_line(snap, number, raw)  # checks the line too
        for number, found in checks.problems_by_line(heads).items():
            snap.problems.setdefault(number, []).extend(found)
    return snap


def add_line(snap: Snapshot, number: int, raw: bytes) -> None:
    """Decode line ``number`` into ``snap``: a head, or a problem, or nothing (memory lines and
    the schema header)."""
    try:
        head = _DECODER.decode(raw)
    except (msgspec.DecodeError, ValueError) as exc:
        snap.add_problem(number, checks.decode_problem(exc))
        return
    if head.kind not in (None, "issue") or (head.schema is not None and head.id is None):
        return
    if not head.id or head.title is None:
        snap.add_problem(number, checks.missing_problem("id" if not head.id else "title"))
        return
    earlier = snap.index.get(head.id)
    if earlier is not None and earlier != number:
        snap.add_problem(earlier, checks.duplicate_problem(head.id, number + 1))
        del snap.heads[earlier]
    snap.heads[number] = head
    snap.index[head.id] = number
    for problem in checks.line_problems(head):
        snap.add_problem(number, problem)


def problems_after_edit(
    snap: Snapshot, changed: int, *, inserted: bool
) -> dict[int, list[Problem]]:
    """``snap``'s problems moved for a rewrite that replaced (or inserted) line ``changed``;
    the changed line's own are dropped, to be found again."""
    moved: dict[int, list[Problem]] = {}
    for line, problems in snap.problems.items():
        if inserted:
            moved[line + 1 if line >= changed else line] = list(problems)
        elif line != changed:
            moved[line] = list(problems)
    return moved
