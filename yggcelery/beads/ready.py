"""Which issues are ready for work, and in what order: the rules of ``bd ready``.

An issue is ready when its status is ``open``; it is neither pinned nor ephemeral; its type is not
one of bd's infrastructure types; neither it nor a direct parent is deferred to the future; and it
is not blocked. Blocked means: a ``blocks`` or ``conditional-blocks`` target that is still active
(not ``closed``/``pinned``), or a ``waits-for`` gate with active children (``any-children`` gates
wait only until the first child closes), or a blocked parent, all the way down the ``parent-child``
tree. A dependency on an id that is not in the store does not block; a ``tombstone`` (deleted, in
pre-0.50 files) counts as not in the store. Open children do not block their epic, and a parent
whose *status* is ``blocked`` does not block its children (bd derives blocking from dependencies
only, so both stores agree).

The rules work on anything shaped like an issue (:class:`ReadyFacts`): the pydantic
:class:`~yggcelery.beads.model.Issue`, and the JSONL store's light per-line records, which is how
100,000 issues are sorted without building 100,000 models. Times compare to the microsecond.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from yggcelery.beads.model import PRIORITY_RANGE, Issue
from yggcelery.settings import SortOrder

log = logging.getLogger(__name__)

#: Issue types that are never handed out as work (bd's infrastructure beads).
EXCLUDED_TYPES = frozenset({"merge-request", "gate", "molecule", "message", "agent", "role", "rig"})
#: Statuses of a blocker that no longer blocks.
INACTIVE_STATUSES = frozenset({"closed", "pinned"})
#: Deleted issues of pre-0.50 files: treated as absent.
DELETED_STATUS = "tombstone"
#: ``hybrid`` sorts issues younger than this by priority, older ones oldest first.
RECENT = timedelta(hours=48)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NEVER = -(2**62)
_BLOCKING = frozenset({"blocks", "conditional-blocks"})


class DependencyFacts(Protocol):
    """What the rules read of one dependency."""

    @property
    def depends_on_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def metadata(self) -> Any: ...


class ReadyFacts(Protocol):
    """What the rules read of one issue."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def issue_type(self) -> str: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def defer_until(self) -> datetime | None: ...
    @property
    def pinned(self) -> bool: ...
    @property
    def ephemeral(self) -> bool: ...
    @property
    def dependencies(self) -> Sequence[DependencyFacts] | None: ...


F = TypeVar("F", bound=ReadyFacts)
#: One candidate, precomputed: (created µs, priority, id, available from µs, the issue).
_Candidate = tuple[int, int, str, int, F]


def ready(
    issues: Iterable[Issue], *, sort: SortOrder = "priority", now: datetime | None = None
) -> list[Issue]:
    """The ready issues among ``issues``, in ``sort`` order (see the module docstring)."""
    return Readiness(issues).pick(sort=sort, now=now)


class Readiness(Generic[F]):
    """The part of :func:`ready` that does not depend on the clock, computed once per read.

    ``pick`` then applies ``defer_until`` and the sort order for a given moment, so a store
    whose file has not changed answers ``ready()`` again without walking the dependency graph.
    Works on any issue-shaped records (:class:`ReadyFacts`) and returns the same objects.
    """

    def __init__(self, issues: Iterable[F]) -> None:
        by_id = {i.id: i for i in issues if i.status != DELETED_STATUS}
        blocked = blocked_ids(by_id)
        self.candidates: list[_Candidate[F]] = [
            (_micros(i.created_at), i.priority, i.id, _available_from(i, by_id), i)
            for i in by_id.values()
            if i.status == "open" and _eligible(i, blocked)
        ]
        _warn_odd_priorities(self.candidates)

    def __repr__(self) -> str:
        return f"<Readiness candidates={len(self.candidates)}>"

    def pick(self, *, sort: SortOrder = "priority", now: datetime | None = None) -> list[F]:
        """The candidates not deferred at ``now``, in ``sort`` order; the id breaks every tie."""
        moment = _aware(now) if now is not None else datetime.now(UTC)
        now_us = _micros(moment)
        chosen = [c for c in self.candidates if c[3] <= now_us]
        if sort == "oldest":
            chosen.sort(key=lambda c: (c[0], c[2]))
        elif sort == "hybrid":
            cutoff = _micros(moment - RECENT)
            chosen.sort(
                key=lambda c: (0, c[1], c[0], c[2]) if c[0] >= cutoff else (1, 0, c[0], c[2])
            )
        elif sort == "priority":
            chosen.sort(key=lambda c: (c[1], -c[0], c[2]))
        else:
            raise ValueError(f"unknown sort order {sort!r} (priority, hybrid or oldest)")
        return [c[4] for c in chosen]


def blocked_ids(by_id: Mapping[str, F]) -> set[str]:
    """Ids blocked by their dependencies, directly or through a blocked ancestor."""
    children: defaultdict[str, list[str]] = defaultdict(list)
    direct: set[str] = set()
    gates: list[tuple[str, str, bool]] = []
    for issue in by_id.values():
        deps = issue.dependencies
        if not deps:
            continue
        active = issue.status not in INACTIVE_STATUSES
        for dep in deps:
            kind, target = dep.type, dep.depends_on_id
            if kind == "parent-child":
                children[target].append(issue.id)
            elif kind in _BLOCKING and active:
                blocker = by_id.get(target)
                if blocker is not None and blocker.status not in INACTIVE_STATUSES:
                    direct.add(issue.id)
            elif kind == "waits-for" and active:
                gates.append((issue.id, target, _waits_for_any(dep.metadata)))
    for issue_id, gate_id, any_child in gates:
        if not _gate_open(children.get(gate_id, []), by_id, any_child=any_child):
            direct.add(issue_id)
    return _descendants(direct, children)


def _eligible(issue: ReadyFacts, blocked: set[str]) -> bool:
    return not (
        issue.pinned or issue.ephemeral or issue.issue_type in EXCLUDED_TYPES or issue.id in blocked
    )


def _available_from(issue: ReadyFacts, by_id: Mapping[str, ReadyFacts]) -> int:
    """The first microsecond at which neither the issue nor a direct parent is deferred."""
    times = [issue.defer_until]
    for dep in issue.dependencies or ():
        if dep.type == "parent-child" and (parent := by_id.get(dep.depends_on_id)) is not None:
            times.append(parent.defer_until)
    return max(_micros(t) for t in times)


def _gate_open(children: list[str], by_id: Mapping[str, F], *, any_child: bool) -> bool:
    """Whether a ``waits-for`` gate lets its waiter go, given the gate's children."""
    present = [by_id[c] for c in children if c in by_id]
    if any_child and any(c.status == "closed" for c in present):
        return True
    return not any(c.status not in INACTIVE_STATUSES for c in present)


def _waits_for_any(metadata: Any) -> bool:
    """Whether a ``waits-for`` dependency's metadata asks for the ``any-children`` gate.

    The metadata may be an object, a JSON text of one (bd stores it as a string), or raw JSON
    bytes (the JSONL store's light records).
    """
    for _ in range(3):
        if isinstance(metadata, dict):
            return metadata.get("gate") == "any-children"
        if isinstance(metadata, str):
            text: str | bytes = metadata
        elif metadata is not None and not isinstance(metadata, (int, float, list)):
            text = bytes(metadata)
        else:
            return False
        try:
            metadata = json.loads(text) if text.strip() else None
        except ValueError:
            return False
    return False


def _descendants(roots: set[str], children: dict[str, list[str]]) -> set[str]:
    """``roots`` and everything below them in the parent-child tree (cycles are harmless)."""
    seen = set(roots)
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _warn_odd_priorities(candidates: list[_Candidate[F]]) -> None:
    for _created, priority, issue_id, _from, _issue in candidates:
        if priority not in PRIORITY_RANGE:
            log.warning("issue %s has priority %s outside 0..4; sorted as is", issue_id, priority)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _micros(moment: datetime | None) -> int:
    """Microseconds since the epoch; a missing time is the earliest."""
    if moment is None:
        return _NEVER
    return (_aware(moment) - _EPOCH) // _MICROSECOND
