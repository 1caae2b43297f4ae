"""JsonlStore: writes, bad lines, caching, and two processes on one file."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from beads_helpers import claim_one, close_many, dep, line, write_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import yggcelery.beads.jsonl as jsonl_module
from yggcelery.beads import JsonlStore
from yggcelery.errors import ClaimConflict, IssueNotFound

MEMORY = '{"_type":"memory","key":"k","value":"v"}'


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return write_lines(tmp_path / ".beads" / "issues.jsonl", [
        line("bd-a1", priority=1, custom={"keep": [1, 2]}),
        MEMORY,
        line("bd-b2", dependencies=[dep("bd-b2", "bd-a1")]),
        line("bd-c3", status="closed", closed_at="2026-01-02T00:00:00Z"),
    ])  # fmt: skip


def test_claim_sets_status_assignee_and_start(path: Path) -> None:
    """A claim makes the issue in_progress for the actor and stamps started_at and updated_at."""
    issue = JsonlStore(path).claim("bd-a1", actor="ygg")
    assert (issue.status, issue.assignee) == ("in_progress", "ygg")
    assert issue.started_at is not None and issue.updated_at is not None


def test_claim_again_by_the_same_actor_is_fine_and_by_another_conflicts(path: Path) -> None:
    """Re-claiming is idempotent; another actor gets ClaimConflict naming the holder."""
    store = JsonlStore(path)
    store.claim("bd-a1", actor="ygg")
    assert store.claim("bd-a1", actor="ygg").assignee == "ygg"
    with pytest.raises(ClaimConflict, match="ygg"):
        store.claim("bd-a1", actor="other")


def test_a_closed_issue_cannot_be_claimed(path: Path) -> None:
    """Only open issues can be claimed."""
    with pytest.raises(ClaimConflict, match="closed"):
        JsonlStore(path).claim("bd-c3", actor="ygg")


def test_closing_a_closed_issue_changes_nothing(path: Path) -> None:
    """Close is idempotent: the file keeps its bytes."""
    before = path.read_bytes()
    assert JsonlStore(path).close("bd-c3", reason="again", actor="ygg").status == "closed"
    assert path.read_bytes() == before


def test_close_then_reopen_clears_close_and_claim(path: Path) -> None:
    """reopen: open again, with no assignee, start or close fields."""
    store = JsonlStore(path)
    store.claim("bd-a1", actor="ygg")
    closed = store.close("bd-a1", reason="done", actor="ygg")
    assert (closed.close_reason, closed.closed_at is not None) == ("done", True)
    issue = store.reopen("bd-a1", note="try again", actor="ygg")
    assert (issue.status, issue.assignee, issue.started_at, issue.closed_at) == (
        "open",
        None,
        None,
        None,
    )
    assert issue.notes == "try again"


def test_set_status_appends_notes_and_keeps_unknown_fields(path: Path) -> None:
    """Notes accumulate; fields yggcelery does not know survive the rewrite."""
    store = JsonlStore(path)
    store.set_status("bd-a1", "blocked", note="first", actor="ygg")
    issue = store.set_status("bd-a1", "blocked", note="second", actor="ygg")
    assert issue.notes == "first\n\nsecond"
    assert json.loads(path.read_text().splitlines()[0])["custom"] == {"keep": [1, 2]}


def test_writes_keep_memory_lines_and_order(path: Path) -> None:
    """Memory lines are skipped by reads and kept, in place, by writes."""
    store = JsonlStore(path)
    store.close("bd-b2", reason="x", actor="ygg")
    lines = path.read_text().splitlines()
    assert lines[1] == MEMORY
    assert [json.loads(t).get("id") for t in lines] == ["bd-a1", None, "bd-b2", "bd-c3"]
    assert [i.id for i in store.list_issues()] == ["bd-a1", "bd-b2", "bd-c3"]


def test_create_takes_the_prefix_and_blocks_on_depends_on(path: Path) -> None:
    """New ids use the file's prefix; depends_on become blocks dependencies."""
    store = JsonlStore(path)
    issue = store.create("New", priority=0, labels=["kind:code"], depends_on=["bd-a1"],
                         metadata={"x": 1}, actor="ygg")  # fmt: skip
    assert issue.id.startswith("bd-") and issue.id not in {"bd-a1", "bd-b2", "bd-c3"}
    assert [(d.depends_on_id, d.type) for d in issue.dependencies] == [("bd-a1", "blocks")]
    assert issue.id not in [i.id for i in store.ready()]
    assert path.read_text().splitlines()[-1].startswith(f'{{"id":"{issue.id}"')


def test_create_refuses_unknown_dependencies(path: Path) -> None:
    """depends_on must name existing issues."""
    with pytest.raises(IssueNotFound):
        JsonlStore(path).create("New", depends_on=["nope"], actor="ygg")


def test_create_in_a_missing_file_starts_it(tmp_path: Path) -> None:
    """A workspace without a file gets one, prefix bd."""
    store = JsonlStore(tmp_path / ".beads" / "issues.jsonl")
    assert store.list_issues() == []
    assert store.create("First", actor="ygg").id.startswith("bd-")


def test_comments_get_uuid_ids_next_to_integer_ones(path: Path) -> None:
    """add_comment appends a 1.x-style comment."""
    comment = JsonlStore(path).add_comment("bd-a1", "hello", author="ygg")
    assert (comment.text, comment.author, isinstance(comment.id, str)) == ("hello", "ygg", True)
    assert [c.text for c in JsonlStore(path).get("bd-a1").comments] == ["hello"]


def test_unknown_ids_raise_issue_not_found(path: Path) -> None:
    """get and writes on a missing id raise IssueNotFound."""
    store = JsonlStore(path)
    with pytest.raises(IssueNotFound):
        store.get("nope")
    with pytest.raises(IssueNotFound):
        store.close("nope", reason="x", actor="ygg")


def test_bad_lines_are_reported_with_line_numbers_and_kept_verbatim(tmp_path: Path) -> None:
    """Invalid JSON, a missing title, a wrong type and a duplicate id are reported; after a
    write every one of them is still there byte for byte."""
    bad = ['{"id": "bd-x", "title": ', '{"id":"bd-y"}', '[1, 2]', line("bd-z", priority="high"),
           line("bd-a1", title="older copy")]  # fmt: skip
    path = write_lines(tmp_path / "issues.jsonl", [bad[0], line("bd-a1"), *bad[1:4], bad[4]])
    store = JsonlStore(path)
    assert [i.id for i in store.ready()] == ["bd-a1"]
    assert sorted(p.line_no for p in store.problems) == [1, 2, 3, 4, 5]
    assert "no title" in next(p.problem for p in store.problems if p.line_no == 3)
    store.close("bd-a1", reason="x", actor="ygg")
    lines = path.read_text().splitlines()
    assert lines[:5] == [bad[0], line("bd-a1"), *bad[1:4]]
    assert json.loads(lines[5])["status"] == "closed"
    assert sorted(p.line_no for p in store.problems) == [1, 2, 3, 4, 5]


def test_a_line_only_the_full_model_refuses_is_named_and_the_others_still_come(
    tmp_path: Path,
) -> None:
    """Labels that are not a list pass the light decoding and fail the full model: the models
    are built in one call, which fails, so each line is validated alone to name the bad one."""
    lines = [line("bd-1", priority=1), line("bd-2", labels=5), line("bd-3", priority=3)]
    store = JsonlStore(write_lines(tmp_path / "issues.jsonl", lines))
    assert [i.id for i in store.ready()] == ["bd-1", "bd-3"]
    assert [i.id for i in store.list_issues()] == ["bd-1", "bd-3"]
    [problem] = store.problems
    assert problem.line_no == 2 and "labels" in problem.problem


def test_crlf_lines_and_spaced_separators_are_read_and_kept(tmp_path: Path) -> None:
    """Old exports with ": " and CRLF endings: read, and the edited line keeps its CR."""
    path = tmp_path / "issues.jsonl"
    path.write_bytes(b'{"id": "bd-1", "title": "one"}\r\n{"id": "bd-2", "title": "two"}\r\n')
    JsonlStore(path).close("bd-1", reason="x", actor="ygg")
    first, second, end = path.read_bytes().split(b"\n")
    assert first.endswith(b"}\r") and second == b'{"id": "bd-2", "title": "two"}\r' and end == b""


def test_an_unchanged_file_is_not_parsed_again(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache is keyed on the file's stat: a second read parses nothing; a change re-parses."""
    calls: list[Path] = []
    real = jsonl_module.parse
    monkeypatch.setattr(jsonl_module, "parse", lambda *a: calls.append(a[0]) or real(*a))
    store = JsonlStore(path)
    store.ready()
    store.list_issues()
    store.ready("oldest")
    assert len(calls) == 1
    JsonlStore(path).close("bd-a1", reason="elsewhere", actor="other")
    assert len(calls) == 2  # the other store's own read before its write
    assert "bd-a1" not in [i.id for i in store.ready()]
    assert len(calls) == 3


def test_two_processes_closing_different_issues_lose_neither_update(tmp_path: Path) -> None:
    """Two processes each close 15 issues at the same time: all 30 end closed."""
    ids = [f"bd-{n:02d}" for n in range(30)]
    path = write_lines(tmp_path / "issues.jsonl", [line(i) for i in ids])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    workers = [ctx.Process(target=close_many, args=(str(path), ids[k::2], barrier)) for k in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    statuses = [json.loads(t)["status"] for t in path.read_text().splitlines()]
    assert statuses == ["closed"] * 30


def test_two_processes_claiming_one_issue_exactly_one_wins(tmp_path: Path) -> None:
    """Two dispatchers by mistake: one claim wins, the other gets ClaimConflict."""
    path = write_lines(tmp_path / "issues.jsonl", [line("bd-1")])
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=claim_one, args=(str(path), "bd-1", actor, barrier, results))
               for actor in ("one", "two")]  # fmt: skip
    for worker in workers:
        worker.start()
    outcomes = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(60)
    assert sorted(outcomes.values()) == ["conflict", "won"]
    winner = next(actor for actor, outcome in outcomes.items() if outcome == "won")
    assert JsonlStore(path).get("bd-1").assignee == winner


_SOUP = st.one_of(
    st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s),
    st.builds(lambda n, p: line(f"bd-{n}", priority=p), st.integers(0, 5), st.integers(-2, 9)),
    st.builds(lambda n: line(f"bd-{n}", dependencies=[dep(f"bd-{n}", "bd-0")]), st.integers(0, 5)),
    st.just(MEMORY),
    st.just('{"id":"bd-9","title":null}'),
    st.just('{"id": 5, "title": "x"}'),
    st.just('{"id":"bd-8","title":"t","created_at":"yesterday"}'),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(_SOUP, max_size=12))
def test_line_soup_never_crashes_the_reader_nor_loses_a_line(
    tmp_path: Path, lines: list[str]
) -> None:
    """Any mix of lines reads without an exception; a write keeps every line it did not change."""
    path = tmp_path / "soup.jsonl"
    path.write_text("".join(f"{t}\n" for t in lines), encoding="utf-8")
    store = JsonlStore(path)
    issues = store.list_issues()
    store.ready()
    assert all(p.line_no <= len(lines) for p in store.problems)
    if issues:
        target = issues[0].id
        store.set_status(target, "blocked", note="soup", actor="t")
        after = path.read_text(encoding="utf-8").split("\n")
        kept = [a == b for a, b in zip(lines, after, strict=False)]
        assert len(after) == len(lines) + 1 and kept.count(False) <= 1


def test_a_batch_lands_all_its_writes_in_one_rewrite(tmp_path: Path) -> None:
    """Inside batch() other readers see the old file; after it, every write at once."""
    path = tmp_path / "issues.jsonl"
    store = JsonlStore(path)
    first = store.create("one", actor="me")
    second = store.create("two", actor="me")
    before = path.read_bytes()
    with store.batch():
        store.claim(first.id, actor="ygg")
        store.close(second.id, reason="done", actor="ygg")
        assert store.get(first.id).status == "in_progress"  # the batch sees its own writes
        assert path.read_bytes() == before  # nobody else does yet
        assert JsonlStore(path).get(second.id).status == "open"
    other = JsonlStore(path)
    assert other.get(first.id).status == "in_progress"
    assert other.get(second.id).status == "closed"


def test_a_batch_keeps_malformed_lines_and_every_other_byte(tmp_path: Path) -> None:
    """Edits in a batch change only their own lines; a bad line stays as it was, reported."""
    path = tmp_path / "issues.jsonl"
    store = JsonlStore(path)
    first = store.create("one", actor="me")
    second = store.create("two", actor="me")
    path.write_bytes(path.read_bytes() + b"{not json\n")
    before = path.read_bytes().split(b"\n")
    with store.batch():
        store.add_comment(first.id, "result", author="ygg")
        store.close(first.id, reason="done", actor="ygg")
        assert store.ready() == [store.get(second.id)]
    after = path.read_bytes().split(b"\n")
    assert len(after) == len(before)
    assert [n for n, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [0]
    assert b"{not json" in after
    assert [p.line_no for p in store.problems] == [3]
