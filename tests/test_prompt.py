"""The prompt of a bead (work/prompt.py): its sections, and one cut to the target's limit."""

from __future__ import annotations

from yggcelery.outcomes import BeadResult
from yggcelery.work.prompt import PromptLimit, build_prompt

FIELDS = {
    "id": "bd-7",
    "title": "Fix the parser",
    "description": "It breaks on empty input.",
    "design": "",
    "acceptance_criteria": "Empty input returns [].",
}
HOST = PromptLimit("skadi-code", 10_000)


def test_prompt_holds_title_description_and_acceptance_criteria_but_no_empty_sections() -> None:
    """Every non-empty section appears under its heading; an empty design is left out."""
    prompt = build_prompt(FIELDS, kind="code", limit=HOST)
    assert not prompt.truncated and prompt.cut_note() == ""
    for text in ("bd-7", "Fix the parser", "It breaks on empty input.", "Acceptance criteria:"):
        assert text in prompt.text
    assert "Design:" not in prompt.text
    assert prompt.original_chars == len(prompt.text)


def test_an_issue_longer_than_the_limit_is_cut_to_it_once_with_a_note() -> None:
    """A 50,000-character description is cut to exactly max_chars, with one note saying how
    much of how much was omitted."""
    long = {**FIELDS, "description": "x" * 50_000}
    prompt = build_prompt(long, kind="code", limit=PromptLimit("cloud", 2_000))
    assert prompt.truncated and len(prompt.text) == 2_000
    assert prompt.text.count("[truncated:") == 1
    assert prompt.text.endswith(f"of {prompt.original_chars} characters omitted]")
    assert prompt.original_chars > 50_000


def test_the_cut_note_names_the_target_its_limit_and_the_sizes() -> None:
    """The footer note says from how many to how many characters, for which target and limit
    (at most the limit: the omitted count may be a digit shorter than the total)."""
    long = {**FIELDS, "description": "y" * 30_000}
    prompt = build_prompt(long, kind="code", limit=PromptLimit("cloud", 24_000))
    assert 23_990 <= len(prompt.text) <= 24_000
    assert prompt.cut_note() == (
        f"prompt cut from {prompt.original_chars:,} to {len(prompt.text):,} characters for cloud"
        " (max_prompt_chars 24,000)"
    )


def test_a_prompt_exactly_at_the_limit_is_not_cut() -> None:
    """A prompt of max_chars characters is sent whole."""
    whole = build_prompt(FIELDS, kind="code", limit=HOST)
    prompt = build_prompt(FIELDS, kind="code", limit=PromptLimit("h", len(whole.text)))
    assert prompt.text == whole.text and not prompt.truncated


def test_the_result_footer_says_where_the_prompt_was_cut() -> None:
    """A result carrying the cut note shows it in the comment's footer line."""
    long = {**FIELDS, "description": "z" * 30_000}
    note = build_prompt(long, kind="code", limit=PromptLimit("cloud", 24_000)).cut_note()
    result = BeadResult(bead="bd-7", task_id="ygg:bd-7:1", kind="code", host="cloud",
                        model="m", text="done", via_cloud=True, prompt_truncated=True,
                        prompt_cut=note)  # fmt: skip
    footer = result.comment().splitlines()[-2]
    assert footer.startswith("ygg: code task on cloud via cloud") and footer.endswith(note)
