"""The dependency edges bd's import keeps, and the ones it drops, before readiness is computed.

A JSONL line lists its issue's dependencies; bd's import (FORMAT.md, "What changed between bd
versions", the same in every era) drops

- an edge to an id that is not in the file (an ``external:`` id is kept, and never blocks; an
  edge to a deleted ``tombstone`` issue goes quietly, as the issue does);
- a self-edge;
- a second edge between the same two issues (the first one's type wins);
- an edge between an ephemeral and a regular issue;
- a ``blocks``/``conditional-blocks`` edge that would close a cycle of such edges, edges taken
  in file order.

:class:`ImportedGraph` keeps what survives, by kind, and lists every dropped edge so the store
can report its line. Looking for cycles costs next to nothing when every blocker is older than
what it blocks (the usual case: a cycle cannot always go back in time). Otherwise the issues
reachable from a younger blocker are split into strongly connected components, and only edges
inside a component of several issues are checked one by one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from typing import Any, Generic, NamedTuple

from yggcelery.beads.facts import DependencyFacts, F, IssueFacts, is_ephemeral

#: Deleted issues of pre-0.50 files: treated as absent.
DELETED_STATUS = "tombstone"
#: Dependency types through which a target that is still active blocks the issue.
BLOCKING = frozenset({"blocks", "conditional-blocks"})
#: Ids of issues in other trackers: kept as edges, never blocking.
EXTERNAL_PREFIX = "external:"
PARENT_CHILD = "parent-child"
WAITS_FOR = "waits-for"


class Drop(StrEnum):
    """Why bd's import drops an edge."""

    MISSING = "missing"  #: the target is not in the file
    SELF = "self"  #: the issue depends on itself
    DUPLICATE = "duplicate"  #: a second edge to the same target
    EPHEMERAL = "ephemeral"  #: one side ephemeral, the other regular
    CYCLE = "cycle"  #: a blocking edge that closes a cycle


class DroppedEdge(NamedTuple):
    """One edge bd's import would not keep. ``detail``: the type kept for a duplicate, the
    cycle (``a -> b -> a``) for a cycle."""

    issue_id: str
    depends_on_id: str
    type: str
    reason: Drop
    detail: str = ""


class Waiter(NamedTuple):
    """A kept ``waits-for`` edge; ``gate`` is what its metadata asks for, if anything."""

    issue_id: str
    gate_id: str
    gate: str | None


class ImportedGraph(Generic[F]):
    """The issues of a file (tombstones left out) and the dependency edges bd's import keeps."""

    def __init__(self, issues: Iterable[F]) -> None:
        self.by_id: dict[str, F] = {issue.id: issue for issue in issues}
        odd = [i for i in self.by_id.values() if i.status == DELETED_STATUS or is_ephemeral(i)]
        self.deleted = {i.id for i in odd if i.status == DELETED_STATUS}
        for issue_id in self.deleted:
            del self.by_id[issue_id]
        self.ephemeral = {i.id for i in odd if i.id in self.by_id}
        #: (issue id, the id that blocks it) of each kept ``blocks``-like edge, in file order.
        self.blocking: list[tuple[str, str]] = []
        #: Parent id to its children (kept ``parent-child`` edges).
        self.children: defaultdict[str, list[str]] = defaultdict(list)
        self.waiters: list[Waiter] = []
        self.dropped: list[DroppedEdge] = []
        late = self._read_edges()
        if late:
            self._drop_cycles(late)

    def __repr__(self) -> str:
        return f"<ImportedGraph issues={len(self.by_id)} dropped={len(self.dropped)}>"

    def _read_edges(self) -> list[str]:
        """Sort every edge into its kind, dropping what the import drops but cycles.

        Returns the blockers that are not older than an issue they block: a cycle of blocking
        edges cannot always go to older issues, so it passes through one of these. This loop
        sees every edge of the file, so it does as little per edge as it can.
        """
        by_id, children, ephemeral, get = self.by_id, self.children, self.ephemeral, self.by_id.get
        blocking: list[tuple[str, str]] = []
        late: list[str] = []
        for issue in by_id.values():
            deps = issue.dependencies
            if not deps:
                continue
            if ephemeral or (len(deps) > 1 and _has_repeats(deps)):
                deps = self._without_repeats_or_links(issue, deps)
            owner, created = issue.id, issue.created_at
            for dep in deps:
                target, kind = dep.depends_on_id, dep.type
                if target == owner:
                    self._record(owner, target, kind, Drop.SELF)
                elif kind == PARENT_CHILD:
                    children[target].append(owner)  # missing parents go below, all at once
                elif (other := get(target)) is None:
                    self._drop_missing(owner, target, kind)
                elif kind in BLOCKING:
                    blocking.append((owner, target))
                    try:
                        if not other.created_at < created:  # type: ignore[operator]
                            late.append(target)
                    except TypeError:  # a missing time, or naive against aware: no order
                        late.append(target)
                elif kind == WAITS_FOR:
                    self.waiters.append(Waiter(owner, target, gate_kind(dep.metadata)))
        self._drop_missing_parents()
        self.blocking = blocking
        return late

    def _drop_missing_parents(self) -> None:
        """Parent-child edges to ids not in the file, found all at once with a set difference."""
        for parent in sorted(self.children.keys() - self.by_id.keys()):
            for child in self.children.pop(parent):
                self._drop_missing(child, parent, PARENT_CHILD)

    def _without_repeats_or_links(
        self, issue: F, deps: Sequence[DependencyFacts]
    ) -> list[DependencyFacts]:
        """``deps`` without a second edge to one target and without ephemeral-regular links
        (each recorded); edges to missing ids or to itself stay, for the caller to drop."""
        kept: list[DependencyFacts] = []
        first: dict[str, str] = {}
        ephemeral = issue.id in self.ephemeral
        for dep in deps:
            target, kind = dep.depends_on_id, dep.type
            if target in self.by_id and target != issue.id:
                if target in first:
                    self._record(issue.id, target, kind, Drop.DUPLICATE, first[target])
                    continue
                if (target in self.ephemeral) != ephemeral:
                    self._record(issue.id, target, kind, Drop.EPHEMERAL)
                    continue
                first[target] = kind
            kept.append(dep)
        return kept

    def _drop_missing(self, owner: str, target: str, kind: str) -> None:
        """Record an edge to an id not in the file (external ids and deleted issues go
        quietly)."""
        if not (target.startswith(EXTERNAL_PREFIX) or target in self.deleted):
            self._record(owner, target, kind, Drop.MISSING)

    def _record(self, owner: str, target: str, kind: str, reason: Drop, detail: str = "") -> None:
        self.dropped.append(DroppedEdge(owner, target, kind, reason, detail))

    def _drop_cycles(self, late: list[str]) -> None:
        """Drop each blocking edge that closes a cycle of those kept before it (file order).

        Every cycle passes through a ``late`` blocker and lies inside one strongly connected
        component of what is reachable from there; only the edges inside such a component are
        searched, one by one, over the edges kept so far.
        """
        onward: defaultdict[str, list[str]] = defaultdict(list)
        for issue_id, target in self.blocking:
            onward[issue_id].append(target)
        component = _cyclic_components(onward, late)
        if not component:
            return
        kept: list[tuple[str, str]] = []
        kept_onward: defaultdict[str, list[str]] = defaultdict(list)
        for issue_id, target in self.blocking:
            inside = component.get(issue_id)
            if inside is not None and component.get(target) == inside:
                path = _path(kept_onward, target, issue_id)
                if path is not None:
                    kind = _first_type(self.by_id[issue_id], target)
                    cycle = " -> ".join([issue_id, *path])
                    self._record(issue_id, target, kind, Drop.CYCLE, cycle)
                    continue
                kept_onward[issue_id].append(target)
            kept.append((issue_id, target))
        self.blocking = kept


def gate_kind(metadata: Any) -> str | None:
    """The ``gate`` a ``waits-for`` edge's metadata names, if any.

    The metadata may be an object, a JSON text of one (bd stores it as a string), or raw JSON
    bytes (the JSONL store's light records).
    """
    for _ in range(3):
        if isinstance(metadata, dict):
            gate = metadata.get("gate")
            return gate if isinstance(gate, str) else None
        if isinstance(metadata, str):
            text: str | bytes = metadata
        elif metadata is not None and not isinstance(metadata, (int, float, list)):
            text = bytes(metadata)
        else:
            return None
        try:
            metadata = json.loads(text) if text.strip() else None
        except ValueError:
            return None
    return None


def _has_repeats(deps: Sequence[DependencyFacts]) -> bool:
    """Whether two of ``deps`` have one target (two deps, the usual many, compare directly)."""
    if len(deps) == 2:
        return deps[0].depends_on_id == deps[1].depends_on_id
    return len({dep.depends_on_id for dep in deps}) < len(deps)


def _first_type(issue: IssueFacts, target: str) -> str:
    """The type of ``issue``'s first dependency on ``target``: the one that is kept."""
    return next(dep.type for dep in issue.dependencies or () if dep.depends_on_id == target)


def _cyclic_components(onward: dict[str, list[str]], roots: Iterable[str]) -> dict[str, int]:
    """Id to component number, for every id reachable from ``roots`` that lies in a strongly
    connected component of more than one id (Tarjan's algorithm, without recursion)."""
    number: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    component: dict[str, int] = {}

    def visit(node: str) -> tuple[str, Iterator[str]]:
        number[node] = low[node] = len(number)
        stack.append(node)
        on_stack.add(node)
        return node, iter(onward.get(node, ()))

    for root in roots:
        if root in number:
            continue
        work = [visit(root)]
        while work:
            node, pending = work[-1]
            for nxt in pending:
                if nxt not in number:
                    work.append(visit(nxt))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], number[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == number[node]:
                    members = [stack.pop()]
                    while members[-1] != node:
                        members.append(stack.pop())
                    on_stack.difference_update(members)
                    if len(members) > 1:
                        component.update(dict.fromkeys(members, number[node]))
    return component


def _path(onward: dict[str, list[str]], start: str, goal: str) -> list[str] | None:
    """A path ``start ... goal`` along ``onward``, or None."""
    came_from: dict[str, str] = {start: start}
    stack = [start]
    while stack:
        node = stack.pop()
        if node == goal:
            path = [node]
            while node != start:
                node = came_from[node]
                path.append(node)
            return path[::-1]
        for nxt in onward.get(node, ()):
            if nxt not in came_from:
                came_from[nxt] = node
                stack.append(nxt)
    return None
