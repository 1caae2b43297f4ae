"""The Beads data model: one issue line of ``issues.jsonl`` and what it holds.

The models are a *view* of a line. Every model keeps unknown fields (``extra="allow"``) so that
nothing bd or the Rust port adds is lost, but the JSONL store never writes a model back: it edits
the line's own JSON object, so untouched fields keep their exact spelling (nanosecond timestamps,
escapes). Timestamps are RFC 3339 with any offset and up to nanoseconds; pydantic's parser reads
them all and keeps microseconds (Python's limit); readiness orders by whole seconds, as bd does.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


def format_timestamp(value: datetime) -> str:
    """``value`` in UTC as RFC 3339 with microseconds, the way bd writes its own stamps."""
    return _as_aware(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> datetime:
    """The current instant, timezone-aware."""
    return datetime.now(UTC)


def _as_aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


#: Lowest and highest Beads priority (0 is the most urgent).
PRIORITY_RANGE = range(5)
#: A line without ``priority`` is P0: bd's import leaves Go's zero value (only ``bd create``
#: defaults to P2).
MISSING_PRIORITY = 0
#: Fields whose ``null`` means "use the default" (the rest keep ``None``).
_NULL_DEFAULTED = frozenset(
    {"description", "design", "acceptance_criteria", "notes", "status", "issue_type", "priority",
     "labels", "dependencies", "comments", "pinned", "ephemeral", "wisp"}
)  # fmt: skip


class _Line(BaseModel):
    """Base of every model: unknown fields are kept and come back in ``model_dump()``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Dependency(_Line):
    """``depends_on_id`` relates to ``issue_id`` by ``type``: ``blocks`` means it blocks it;
    for ``parent-child``, ``issue_id`` is the child."""

    issue_id: str = ""
    depends_on_id: str
    type: str = "blocks"
    created_at: datetime | None = None
    created_by: str | None = None
    metadata: Any = None


class Comment(_Line):
    """One comment; its id is an integer before bd 1.0 and a UUID string after."""

    id: int | str | None = None
    issue_id: str | None = None
    author: str = ""
    text: str = ""
    created_at: datetime | None = None


class Issue(_Line):
    """One bead. ``status`` and ``issue_type`` keep any string; ``priority`` keeps any integer."""

    id: str
    title: str
    description: str = ""
    design: str = ""
    acceptance_criteria: str = ""
    notes: str = ""
    status: str = "open"
    priority: int = MISSING_PRIORITY
    issue_type: str = "task"
    assignee: str | None = None
    owner: str | None = None
    created_by: str | None = None
    labels: list[str] = Field(default_factory=list)
    dependencies: list[Dependency] = Field(default_factory=list)
    comments: list[Comment] = Field(default_factory=list)
    metadata: Any = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None
    close_reason: str | None = None
    defer_until: datetime | None = None
    due_at: datetime | None = None
    pinned: bool = False
    ephemeral: bool = False
    #: The 0.35-0.37 name of ``ephemeral``.
    wisp: bool = False

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        """bd's defaults for fields written as ``null`` (one C-speed scan when there are none)."""
        if isinstance(data, dict) and None in data.values():
            return {k: v for k, v in data.items() if v is not None or k not in _NULL_DEFAULTED}
        return data

    def has_any_label(self, names: AbstractSet[str]) -> bool:
        """Whether one of ``names`` is among the labels."""
        return not names.isdisjoint(self.labels)

    @property
    def parent_ids(self) -> list[str]:
        """Ids this issue is a child of (its ``parent-child`` dependencies)."""
        return [d.depends_on_id for d in self.dependencies if d.type == "parent-child"]

    def __repr__(self) -> str:
        return f"<Issue {self.id} {self.status} p{self.priority} {self.issue_type}>"
