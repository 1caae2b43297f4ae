"""The prompt of a bead: its sections, and truncation with a note when it exceeds the context."""

from __future__ import annotations

from yggcelery.prompt import build_prompt

FIELDS = {
    "id": "bd-7",
    "title": "Fix the parser",
    "description": "It breaks on empty input.",
    "design": "",
    "acceptance_criteria": "Empty input returns [].",
}


def test_prompt_holds_title_description_and_acceptance_criteria_but_no_empty_sections() -> None:
    """Every non-empty section appears under its heading; an empty design is left out."""
    prompt = build_prompt(FIELDS, kind="code", max_chars=10_000)
    assert not prompt.truncated
    for text in ("bd-7", "Fix the parser", "It breaks on empty input.", "Acceptance criteria:"):
        assert text in prompt.text
    assert "Design:" not in prompt.text


def test_issue_longer_than_the_context_is_cut_with_a_note() -> None:
    """A 50,000-character description is cut to max_chars and the prompt says so."""
    long = {**FIELDS, "description": "x" * 50_000}
    prompt = build_prompt(long, kind="code", max_chars=2_000)
    assert prompt.truncated
    assert len(prompt.text) <= 2_000
    assert "truncated" in prompt.text
    assert prompt.original_chars > 50_000
