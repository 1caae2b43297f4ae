"""Which issues are ready for work, and in what order: the rules of ``bd ready``, in both eras.

With a bd workspace ``bd ready --json`` decides; these rules are for a JSONL file read without
bd. Two rule sets are in use (FORMAT.md, "What changed between bd versions"); what differs is a
field of :class:`Rules`, and the two sets stand side by side in :data:`RULE_SETS`:

==============================  =======================  ==================================
rule                            ``"1.0"`` (bd 1.0.x)      ``"current"`` (default)
==============================  =======================  ==================================
order within a priority         newest first              oldest first (FIFO, GH#4043)
excluded types                  INFRASTRUCTURE_TYPES      the same plus ``epic`` (GH#5930)
excluded labels                 none                      ``human``
``waits-for`` without a gate    ``any-children``          ``all-children``
==============================  =======================  ==================================

The rest holds in both, each rule in one place:

- only ``open`` issues are ready (:data:`READY_STATUS`); any other status, unknown ones
  included, keeps an issue out;
- pinned and ephemeral issues never are; a legacy ``"wisp": true`` line is ephemeral
  (:func:`~yggcelery.beads.facts.is_ephemeral`);
- a ``defer_until`` in the future hides the issue and its direct children;
- blocked issues are not ready (:func:`blocked_ids`): a ``blocks`` or ``conditional-blocks``
  target that is still active (not ``closed``/``pinned``, :data:`INACTIVE_STATUSES`), a
  ``waits-for`` gate whose children are not done, or a blocked parent, all the way down the
  ``parent-child`` tree. Open children do not block their epic; a parent whose *status* is
  ``blocked`` does not block its children (bd derives blocking from dependencies only);
- only the edges bd's import keeps count (:mod:`yggcelery.beads.edges`: no edge to a missing id,
  no self-edge, no duplicate, no ephemeral-regular link, no cycle-closing blocker), and a
  deleted (``tombstone``) issue counts as absent;
- ``created_at`` orders in whole seconds, rounded, as bd's Dolt ``DATETIME`` stores it, so
  issues created in one second fall back to id order (:func:`created_second`);
- a line without ``priority`` is P0 (:data:`~yggcelery.beads.model.MISSING_PRIORITY`), and a
  priority outside 0..4 sorts as the number it is;
- ``hybrid`` sorts issues younger than :data:`RECENT` by priority, older ones oldest first;
  ``oldest`` is oldest first; the id breaks every tie.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal

from yggcelery.beads.edges import ImportedGraph
from yggcelery.beads.facts import F, IssueFacts, is_ephemeral
from yggcelery.settings import SortOrder

RuleSetName = Literal["current", "1.0"]
Gate = Literal["any-children", "all-children"]

#: The only status an issue can be ready in.
READY_STATUS = "open"
#: Statuses of a blocker that no longer blocks, and of gate children that are done.
INACTIVE_STATUSES = frozenset({"closed", "pinned"})
#: bd's infrastructure beads, never handed out as work.
INFRASTRUCTURE_TYPES = frozenset(
    {"merge-request", "gate", "molecule", "message", "agent", "role", "rig"}
)
#: ``hybrid`` sorts issues younger than this by priority, older ones oldest first.
RECENT = timedelta(hours=48)


@dataclass(frozen=True)
class Rules:
    """What differs between two eras of ``bd ready`` (the table in the module docstring)."""

    name: RuleSetName
    #: Within a priority: newest first, or oldest first.
    newest_first: bool
    #: Issue types never handed out as work.
    excluded_types: frozenset[str]
    #: An issue with one of these labels is never handed out.
    excluded_labels: frozenset[str]
    #: What a ``waits-for`` edge with no ``gate`` in its metadata waits for.
    default_gate: Gate

    def __repr__(self) -> str:
        return f"<Rules {self.name}>"


RULE_SETS: dict[RuleSetName, Rules] = {
    "1.0": Rules(
        "1.0",
        newest_first=True,
        excluded_types=INFRASTRUCTURE_TYPES,
        excluded_labels=frozenset(),
        default_gate="any-children",
    ),
    "current": Rules(
        "current",
        newest_first=False,
        excluded_types=INFRASTRUCTURE_TYPES | {"epic"},
        excluded_labels=frozenset({"human"}),
        default_gate="all-children",
    ),
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NEVER = -(2**62)
#: One candidate, precomputed: (created second, priority, id, available from µs, the issue).
_Candidate = tuple[int, int, str, int, F]


def rules_named(name: str) -> Rules:
    """The rule set called ``name``; ValueError naming the choices otherwise."""
    try:
        return RULE_SETS[name]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown rule set {name!r} (current or 1.0)") from None


def ready(
    issues: Iterable[F],
    *,
    sort: SortOrder = "priority",
    now: datetime | None = None,
    rules: RuleSetName = "current",
) -> list[F]:
    """The ready issues among ``issues``, in ``sort`` order (see the module docstring)."""
    return Readiness(ImportedGraph(issues), rules_named(rules)).pick(sort=sort, now=now)


class Readiness(Generic[F]):
    """The part of :func:`ready` that does not depend on the clock, computed once per read.

    ``pick`` then applies ``defer_until`` and the sort order for a given moment, so a store
    whose file has not changed answers ``ready()`` again without walking the dependency graph.
    Works on any issue-shaped records (:class:`~yggcelery.beads.facts.IssueFacts`) and returns
    the same objects.
    """

    def __init__(self, graph: ImportedGraph[F], rules: Rules) -> None:
        self.rules = rules
        blocked = blocked_ids(graph, rules)
        parents_defer = _parents_defer(graph)
        self.candidates: list[_Candidate[F]] = [
            (created_second(i.created_at), i.priority, i.id,
             max(_micros(i.defer_until), parents_defer.get(i.id, _NEVER)), i)
            for i in graph.by_id.values()
            if i.status == READY_STATUS and i.id not in blocked and not excluded(i, rules)
        ]  # fmt: skip

    def __repr__(self) -> str:
        return f"<Readiness {self.rules.name} candidates={len(self.candidates)}>"

    def pick(self, *, sort: SortOrder = "priority", now: datetime | None = None) -> list[F]:
        """The candidates not deferred at ``now``, in ``sort`` order; the id breaks every tie."""
        moment = _aware(now) if now is not None else datetime.now(UTC)
        now_us = _micros(moment)
        chosen = [c for c in self.candidates if c[3] <= now_us]
        if sort == "oldest":
            chosen.sort(key=lambda c: (c[0], c[2]))
        elif sort == "hybrid":
            cutoff = created_second(moment - RECENT)
            chosen.sort(
                key=lambda c: (0, c[1], c[0], c[2]) if c[0] >= cutoff else (1, 0, c[0], c[2])
            )
        elif sort == "priority" and self.rules.newest_first:
            chosen.sort(key=lambda c: (c[1], -c[0], c[2]))
        elif sort == "priority":
            chosen.sort(key=lambda c: (c[1], c[0], c[2]))
        else:
            raise ValueError(f"unknown sort order {sort!r} (priority, hybrid or oldest)")
        return [c[4] for c in chosen]


def excluded(issue: IssueFacts, rules: Rules) -> bool:
    """Whether the issue is never handed out, whatever blocks it: pinned, ephemeral, an
    excluded type, or an excluded label."""
    if issue.pinned or is_ephemeral(issue) or issue.issue_type in rules.excluded_types:
        return True
    return bool(rules.excluded_labels) and issue.has_any_label(rules.excluded_labels)


def blocked_ids(graph: ImportedGraph[F], rules: Rules) -> set[str]:
    """Ids blocked by their dependencies, directly or through a blocked ancestor."""
    by_id = graph.by_id
    direct = {
        issue_id
        for issue_id, target in graph.blocking
        if by_id[issue_id].status not in INACTIVE_STATUSES
        and by_id[target].status not in INACTIVE_STATUSES
    }
    for waiter in graph.waiters:
        if by_id[waiter.issue_id].status in INACTIVE_STATUSES:
            continue
        gate = waiter.gate if waiter.gate in ("any-children", "all-children") else None
        children = [by_id[c] for c in graph.children.get(waiter.gate_id, ())]
        if not gate_open(children, gate or rules.default_gate):
            direct.add(waiter.issue_id)
    return _descendants(direct, graph.children)


def gate_open(children: Sequence[IssueFacts], gate: str) -> bool:
    """Whether a ``waits-for`` gate lets its waiter go: ``all-children`` when every child is
    done, ``any-children`` as soon as one has closed (or when none is left to wait for)."""
    if gate == "any-children" and any(c.status == "closed" for c in children):
        return True
    return all(c.status in INACTIVE_STATUSES for c in children)


def created_second(moment: datetime | None) -> int:
    """``created_at`` as bd orders it: whole seconds since the epoch, rounded half up; a
    missing time is the earliest."""
    if moment is None:
        return _NEVER
    return (_micros(moment) + 500_000) // 1_000_000


def _parents_defer(graph: ImportedGraph[Any]) -> dict[str, int]:
    """Child id to the latest ``defer_until`` (µs) of its direct parents, where one is set."""
    latest: dict[str, int] = {}
    for parent_id, children in graph.children.items():
        until = graph.by_id[parent_id].defer_until
        if until is None:
            continue
        for child in children:
            latest[child] = max(latest.get(child, _NEVER), _micros(until))
    return latest


def _descendants(roots: set[str], children: Mapping[str, list[str]]) -> set[str]:
    """``roots`` and everything below them in the parent-child tree (cycles are harmless)."""
    seen = set(roots)
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _micros(moment: datetime | None) -> int:
    """Microseconds since the epoch; a missing time is the earliest."""
    if moment is None:
        return _NEVER
    return (_aware(moment) - _EPOCH) // _MICROSECOND
