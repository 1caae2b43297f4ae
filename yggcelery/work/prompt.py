"""The prompt for one bead: title, description, design and acceptance criteria, within a limit.

This is the only place a prompt is cut. The limit is the target's: the host's
``max_prompt_chars``, or ``cloud.max_prompt_chars`` when the bead runs on the cloud fallback. An
issue too long for it is cut once, the prompt ends with a note saying how much was cut (so the
model knows it worked from a truncated issue), and the result footer says where and how much.
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


@dataclass(frozen=True)
class PromptLimit:
    """The largest prompt a target takes: ``target`` is a host name or ``cloud``."""

    target: str
    max_chars: int


@dataclass(frozen=True)
class Prompt:
    """The text sent to the model, and where and how much of the issue was cut to fit."""

    text: str
    original_chars: int
    limit: PromptLimit

    @property
    def truncated(self) -> bool:
        return len(self.text) < self.original_chars

    def cut_note(self) -> str:
        """``""``, or how the result footer says the prompt was cut."""
        if not self.truncated:
            return ""
        return (
            f"prompt cut from {self.original_chars:,} to {len(self.text):,} characters"
            f" for {self.limit.target} (max_prompt_chars {self.limit.max_chars:,})"
        )


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


def build_prompt(fields: dict[str, Any], *, kind: str, limit: PromptLimit) -> Prompt:
    """Prompt text for ``fields`` (from :func:`bead_fields`), at most ``limit.max_chars`` long."""
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
    return Prompt(text=truncate(text, limit.max_chars), original_chars=len(text), limit=limit)


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, ending with a note of how much was cut."""
    if len(text) <= max_chars:
        return text
    note = f"\n\n[truncated: {{}} of {len(text)} characters omitted]"
    keep = max_chars - len(note.format(len(text)))
    return text[:keep] + note.format(len(text) - keep)
