"""The prompt for one bead: title, description, design and acceptance criteria, within a budget.

An issue whose text exceeds the model's context is cut, and the prompt says so, so the model (and
the person reading the result) knows it worked from a truncated issue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yggcelery.beads import Issue

_SECTIONS = (
    ("description", "Description"),
    ("design", "Design"),
    ("acceptance_criteria", "Acceptance criteria"),
)
TRUNCATION_NOTE = "[Note: this issue's text was truncated to {kept} of {total} characters.]"


@dataclass(frozen=True)
class Prompt:
    """The text sent to the model and whether the issue had to be cut to fit."""

    text: str
    truncated: bool
    original_chars: int


def bead_fields(issue: Issue) -> dict[str, Any]:
    """The parts of an issue a worker needs, as plain JSON (workers never read Beads)."""
    return {
        "id": issue.id,
        "title": issue.title,
        "description": issue.description or "",
        "design": issue.design or "",
        "acceptance_criteria": issue.acceptance_criteria or "",
        "issue_type": issue.issue_type,
    }


def build_prompt(fields: dict[str, Any], *, kind: str, max_chars: int) -> Prompt:
    """Prompt text for ``fields`` (from :func:`bead_fields`), at most ``max_chars`` long."""
    parts = [
        f"You are working on issue {fields['id']} ({kind} task).",
        f"Title: {fields['title']}",
    ]
    for key, heading in _SECTIONS:
        value = str(fields.get(key) or "").strip()
        if value:
            parts.append(f"{heading}:\n{value}")
    parts.append("Do the work the issue asks for and reply with the result.")
    text = "\n\n".join(parts)
    if len(text) <= max_chars:
        return Prompt(text=text, truncated=False, original_chars=len(text))
    note = TRUNCATION_NOTE.format(kept=0, total=len(text))
    keep = max(max_chars - len(note) - 2, 0)
    note = TRUNCATION_NOTE.format(kept=keep, total=len(text))
    return Prompt(text=f"{text[:keep]}\n\n{note}", truncated=True, original_chars=len(text))
