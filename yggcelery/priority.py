"""Beads priorities as one type: 0 (most urgent) to 4, each its own broker priority level.

Every clamp and every ``p0``..``p4`` label in the package goes through :class:`Priority`. A value
outside 0..4, or no number at all, is read as the *least* urgent level: a typo in a Beads file
must never jump the queue ahead of real p0 work. (Beads itself keeps the value; only dispatch
reads it this way.)
"""

from __future__ import annotations

from enum import IntEnum


class Priority(IntEnum):
    """A Beads priority; compares and serialises as its number."""

    P0 = 0  # critical: dispatched first, and never by aging
    P1 = 1  # high; aging promotes waiting work no further than this
    P2 = 2  # medium: Beads' default for a new issue
    P3 = 3  # low
    P4 = 4  # backlog; also where an invalid value goes

    @classmethod
    def of(cls, value: object) -> Priority:
        """The priority of a raw Beads value; anything outside 0..4 is :attr:`P4`."""
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 4:
            return cls(value)
        return cls.P4

    @property
    def label(self) -> str:
        """``p0`` .. ``p4``: the key of per-priority counts in status, metrics and logs."""
        return f"p{self.value}"

    @classmethod
    def counts(cls) -> dict[str, int]:
        """A zero count per label, most urgent first."""
        return {p.label: 0 for p in cls}


#: Every priority, most urgent first.
PRIORITIES = tuple(Priority)
#: The priority of a task sent without one (Beads' default for a new issue).
UNPRIORITISED = Priority.P2
