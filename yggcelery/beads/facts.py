"""What the readiness rules read of an issue, whatever holds it.

The rules work on anything shaped like an issue: the pydantic
:class:`~yggcelery.beads.model.Issue`, and the JSONL store's light per-line records
(:class:`~yggcelery.beads.snapshot.Head`), which is how 100,000 issues are sorted without
building 100,000 models. Both carry bd's defaults for absent fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any, Protocol, TypeVar


class DependencyFacts(Protocol):
    """What the rules read of one dependency."""

    @property
    def depends_on_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def metadata(self) -> Any: ...


class IssueFacts(Protocol):
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
    def wisp(self) -> bool: ...
    @property
    def dependencies(self) -> Sequence[DependencyFacts] | None: ...

    def has_any_label(self, names: AbstractSet[str]) -> bool:
        """Whether one of ``names`` is among the issue's labels."""
        ...


F = TypeVar("F", bound=IssueFacts)


def is_ephemeral(issue: IssueFacts) -> bool:
    """Ephemeral, or a legacy ``"wisp": true`` line (bd 0.35-0.37), which bd reads the same."""
    return issue.ephemeral or issue.wisp
