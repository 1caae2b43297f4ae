"""What is wrong with a line of an ``issues.jsonl`` file: said once, with the file and line number.

bd would refuse a whole file for some problems (``refused``: invalid JSON, a priority outside
0..4, an unknown status, ``closed_at`` that does not match the status, a line bd cannot read);
the dispatcher instead keeps every line, reports it, and works with the rest. The others are
warnings: an unknown issue type, a duplicate id, and every dependency edge bd's import drops.
Each text says what is wrong and how the line is treated. A line with several problems is one
:class:`Diagnostic`, so it is reported once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from yggcelery.beads.edges import DELETED_STATUS, Drop, DroppedEdge
from yggcelery.beads.model import PRIORITY_RANGE
from yggcelery.errors import BeadsFormatError

log = logging.getLogger(__name__)

#: Statuses bd knows (``tombstone`` only in pre-0.50 files).
KNOWN_STATUSES = frozenset(
    {"open", "in_progress", "blocked", "deferred", "closed", "pinned", "hooked", DELETED_STATUS}
)
#: bd's built-in issue types, its internal ``event``, and the orchestration types its tools use.
KNOWN_TYPES = frozenset(
    {"bug", "feature", "task", "epic", "chore", "decision", "message", "molecule", "gate",
     "spike", "story", "milestone", "event", "merge-request", "agent", "role", "rig", "convoy",
     "slot"}
)  # fmt: skip
Severity = Literal["error", "warning"]
_PRIORITIES = frozenset(PRIORITY_RANGE)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a line; ``refused`` when bd would refuse the whole file for it."""

    text: str
    refused: bool = False


@dataclass(frozen=True)
class Diagnostic:
    """Everything wrong with one line (``line_no`` counts from 1)."""

    path: Path
    line_no: int
    problems: tuple[Problem, ...]
    #: The issue on that line, when the line has one.
    issue_id: str | None = None

    @property
    def refused(self) -> bool:
        """Whether bd would refuse the file because of this line."""
        return any(p.refused for p in self.problems)

    @property
    def severity(self) -> Severity:
        return "error" if self.refused else "warning"

    @property
    def problem(self) -> str:
        return "; ".join(p.text for p in self.problems)

    def __str__(self) -> str:
        return f"beads file {self.path} line {self.line_no}: {self.problem}"

    def as_json(self) -> dict[str, Any]:
        return {"file": str(self.path), "line": self.line_no, "issue": self.issue_id,
                "severity": self.severity, "problems": [p.text for p in self.problems]}  # fmt: skip

    def as_error(self) -> BeadsFormatError:
        return BeadsFormatError(self.path, self.line_no, self.problem)


class LineFacts(Protocol):
    """What the line checks read (the JSONL store's light record has it)."""

    @property
    def status(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def issue_type(self) -> str: ...
    @property
    def closed_at(self) -> object: ...


def problems_by_line(lines: Mapping[int, LineFacts]) -> dict[int, list[Problem]]:
    """:func:`line_problems` of every line that has some, by line index.

    One quick pass picks the lines that may have a problem (the few), so 100,000 lines cost a
    comprehension, not 100,000 calls; :func:`line_problems` decides for those.
    """
    maybe = [
        number
        for number, line in lines.items()
        if line.priority not in _PRIORITIES
        or line.status not in KNOWN_STATUSES
        or line.issue_type not in KNOWN_TYPES
        or (line.closed_at is not None) is not (line.status == "closed")
    ]
    return {number: found for number in maybe if (found := line_problems(lines[number]))}


def line_problems(line: LineFacts) -> list[Problem]:
    """What is wrong with one issue line on its own."""
    status, priority, kind = line.status, line.priority, line.issue_type
    closed_at_fits = (line.closed_at is not None) is (status == "closed")
    found = []
    if priority not in _PRIORITIES:
        where = "after P4" if priority > PRIORITY_RANGE[-1] else "before P0"
        found.append(Problem(f"priority {priority} outside 0..4 (bd refuses the file; kept, "
                             f"sorted {where})", refused=True))  # fmt: skip
    if status not in KNOWN_STATUSES:
        found.append(Problem(f"unknown status {status!r} (bd refuses the file unless its "
                             "status.custom lists it; kept: never ready, and it blocks its "
                             "dependents like any status but closed)", refused=True))  # fmt: skip
    if not closed_at_fits and status != DELETED_STATUS:
        found.append(_closed_at_problem(status))
    if kind not in KNOWN_TYPES:
        found.append(Problem(f"unknown issue type {kind!r} (bd takes it only when its "
                             "types.custom lists it; kept, handed out like a task)"))  # fmt: skip
    return found


def _closed_at_problem(status: str) -> Problem:
    if status == "closed":
        return Problem("closed without closed_at (bd refuses the file; kept, closed)", True)
    return Problem(f"closed_at set but status is {status!r} (bd refuses the file; kept, the "
                   "status decides)", refused=True)  # fmt: skip


def decode_problem(exc: Exception) -> Problem:
    """A line msgspec could not decode: invalid JSON, or a field of the wrong type."""
    text = str(exc)
    if "JSON" in text or "truncated" in text or "trailing" in text.lower():
        return Problem(f"invalid JSON ({text}); line skipped, kept as it is", refused=True)
    return Problem(f"unusable issue ({text}); line skipped, kept as it is", refused=True)


def model_problem(exc: ValidationError) -> Problem:
    """A line the full model refuses (a field the light decoding does not read)."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(line)"
    return Problem(f"invalid issue: {where}: {error['msg']}; line skipped, kept as it is", True)


def missing_problem(field: str) -> Problem:
    return Problem(f"issue line has no {field}; line skipped, kept as it is", refused=True)


def duplicate_problem(issue_id: str, used_line_no: int) -> Problem:
    return Problem(f"duplicate id {issue_id}; line {used_line_no} is used, this one is kept "
                   "as it is")  # fmt: skip


_EDGE_TEXT = {
    Drop.MISSING: "{type} dependency on {target}, which is not in the file",
    Drop.SELF: "{type} dependency on itself",
    Drop.DUPLICATE: "second dependency on {target} ({type}; the first one, {detail}, is kept)",
    Drop.EPHEMERAL: "{type} dependency on {target} links an ephemeral and a regular issue",
    Drop.CYCLE: "{type} dependency on {target} closes the cycle {detail}",
}


def edge_problem(edge: DroppedEdge) -> Problem:
    """A dependency bd's import drops, and what that means here."""
    text = _EDGE_TEXT[edge.reason].format(
        type=edge.type, target=edge.depends_on_id, detail=edge.detail
    )
    return Problem(f"{text} (bd's import drops it; it blocks nothing here)")


#: Where a store sends the diagnostics it has not reported yet.
Report = Callable[[Sequence[Diagnostic]], None]


def log_diagnostics(diagnostics: Sequence[Diagnostic]) -> None:
    """The default report of a store: one warning per line."""
    for diagnostic in diagnostics:
        log.warning("%s", diagnostic)
