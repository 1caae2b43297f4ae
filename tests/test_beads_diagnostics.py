"""What is wrong with one line, and how a diagnostic says it (file, line, problem, severity)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from yggcelery.beads.diagnostics import (
    Diagnostic,
    Problem,
    decode_problem,
    edge_problem,
    line_problems,
    problems_by_line,
)
from yggcelery.beads.edges import Drop, DroppedEdge
from yggcelery.beads.snapshot import Head
from yggcelery.errors import BeadsFormatError


def head(**fields: object) -> Head:
    return Head(id="bd-1", title="t", **fields)  # type: ignore[arg-type]


def texts(h: Head) -> list[str]:
    return [p.text for p in line_problems(h)]


@pytest.mark.parametrize("fields", [{}, {"status": "closed", "closed_at": "2026-01-01T00:00:00Z"},
                                    {"status": "tombstone", "closed_at": "2026-01-01T00:00:00Z"},
                                    {"priority": 4, "issue_type": "convoy"}])  # fmt: skip
def test_a_plain_line_has_no_problem(fields: dict[str, object]) -> None:
    """Known status and type, priority 0..4, closed_at exactly on closed issues: nothing to say."""
    assert line_problems(head(**fields)) == []
    assert problems_by_line({7: head(**fields)}) == {}


@pytest.mark.parametrize(("priority", "where"), [(9, "after P4"), (-1, "before P0")])
def test_a_priority_outside_0_to_4_is_refused_and_says_where_it_sorts(
    priority: int, where: str
) -> None:
    """bd refuses it; here it is kept and sorted as the number it is."""
    [problem] = line_problems(head(priority=priority))
    assert problem.refused
    assert problem.text == (
        f"priority {priority} outside 0..4 (bd refuses the file; kept, sorted {where})"
    )


def test_an_unknown_status_is_refused_and_says_it_blocks() -> None:
    """Kept, never ready, and it blocks its dependents like any status but closed."""
    [problem] = line_problems(head(status="review"))
    assert problem.refused and "unknown status 'review'" in problem.text
    assert "never ready" in problem.text and "blocks its dependents" in problem.text


@pytest.mark.parametrize(("fields", "text"), [
    ({"status": "open", "closed_at": "2026-01-01T00:00:00Z"}, "closed_at set but status is 'open'"),
    ({"status": "closed"}, "closed without closed_at"),
])  # fmt: skip
def test_closed_at_must_match_the_status(fields: dict[str, object], text: str) -> None:
    """bd sets closed_at exactly when an issue is closed, and refuses a file that does not."""
    [problem] = line_problems(head(**fields))
    assert problem.refused and problem.text.startswith(text)


def test_an_unknown_issue_type_is_a_warning() -> None:
    """bd takes custom types its config lists, so this is not a refusal."""
    [problem] = line_problems(head(issue_type="story-ish"))
    assert not problem.refused
    assert problem.text.startswith("unknown issue type 'story-ish'")


def test_every_problem_of_a_line_is_listed() -> None:
    """A line can be wrong in several ways at once; problems_by_line finds it in a crowd."""
    bad = head(priority=7, status="review", issue_type="x", closed_at="2026-01-01T00:00:00Z")
    assert len(line_problems(bad)) == 4
    lines = {n: head() for n in range(100)} | {42: bad}
    assert list(problems_by_line(lines)) == [42]


def test_cut_json_and_wrong_types_read_as_decode_problems() -> None:
    """A line cut mid-JSON is invalid JSON; a field of the wrong type makes it unusable."""
    decoder = msgspec.json.Decoder(Head)
    with pytest.raises(msgspec.DecodeError) as cut:
        decoder.decode(b'{"id": "bd-2", "title": "cu')
    with pytest.raises(msgspec.DecodeError) as typed:
        decoder.decode(b'{"id": "bd-2", "title": "t", "priority": "high"}')
    assert decode_problem(cut.value).text.startswith("invalid JSON (")
    assert decode_problem(typed.value).text.startswith("unusable issue (Expected `int`")
    assert decode_problem(cut.value).refused and decode_problem(typed.value).refused


def test_each_dropped_edge_says_why_and_that_it_blocks_nothing() -> None:
    """The import's reasons, in words."""
    edges = {
        Drop.MISSING: "blocks dependency on bd-9, which is not in the file",
        Drop.SELF: "blocks dependency on itself",
        Drop.DUPLICATE: "second dependency on bd-9 (blocks; the first one, related, is kept)",
        Drop.EPHEMERAL: "blocks dependency on bd-9 links an ephemeral and a regular issue",
        Drop.CYCLE: "blocks dependency on bd-9 closes the cycle bd-1 -> bd-9 -> bd-1",
    }
    for reason, text in edges.items():
        detail = {"duplicate": "related", "cycle": "bd-1 -> bd-9 -> bd-1"}.get(reason, "")
        problem = edge_problem(DroppedEdge("bd-1", "bd-9", "blocks", reason, detail))
        assert problem.text == f"{text} (bd's import drops it; it blocks nothing here)"
        assert not problem.refused


def test_a_diagnostic_names_file_line_and_every_problem_once() -> None:
    """One line, two problems: one message, an error when bd refuses any of them."""
    found = Diagnostic(Path("x/issues.jsonl"), 3, (Problem("a", refused=True), Problem("b")), "i")
    assert str(found) == "beads file x/issues.jsonl line 3: a; b"
    assert found.severity == "error"
    assert found.as_json() == {"file": "x/issues.jsonl", "line": 3, "issue": "i",
                               "severity": "error", "problems": ["a", "b"]}  # fmt: skip
    error = found.as_error()
    assert isinstance(error, BeadsFormatError) and (error.line_no, error.problem) == (3, "a; b")
    assert Diagnostic(Path("f"), 1, (Problem("w"),)).severity == "warning"
