"""The prompt for one bead: title, description, design and acceptance criteria, within a budget.

An issue whose text exceeds the model's context is cut, and the prompt ends with a note saying how
much was cut (:func:`yggcelery.llm.wire.truncate_prompt`), so the model knows it worked from a
truncated issue; the result comment says so too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yggcelery.llm.wire import truncate_prompt

if TYPE_CHECKING:
    from yggcelery.beads import Issue

_SECTIONS = (
    ("description", "Description"),
    ("design", "Design"),
    ("acceptance_criteria", "Acceptance criteria"),
)


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
    sent = truncate_prompt(text, max_chars)
    return Prompt(text=sent, truncated=sent is not text, original_chars=len(text))
