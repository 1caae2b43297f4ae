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
from yggcelery.beads.snapshot import Snapshot, StatKey, parse
from yggcelery.errors import BeadsFormatError, ClaimConflict, IssueNotFound

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


@pytest.mark.parametrize("field", ["assignee", "labels"])
def test_a_line_only_the_full_model_refuses_is_named_and_the_others_still_come(
    tmp_path: Path, field: str
) -> None:
    """An assignee, or labels, that are a number pass the light decoding (which does not read
    them, or keeps them raw) and fail the full model: that line is named once built, and get()
    says why it cannot be used."""
    lines = [line("bd-1", priority=1), line("bd-2", **{field: 5}), line("bd-3", priority=3)]
    store = JsonlStore(write_lines(tmp_path / "issues.jsonl", lines))
    assert [i.id for i in store.ready()] == ["bd-1", "bd-3"]
    assert [i.id for i in store.list_issues()] == ["bd-1", "bd-3"]
    [problem] = store.problems
    assert problem.line_no == 2 and field in problem.problem and problem.refused
    with pytest.raises(BeadsFormatError, match=rf"line 2: invalid issue: {field}"):
        store.get("bd-2")


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

    def counting(path: Path, content: bytes, key: StatKey | None) -> Snapshot:
        calls.append(path)
        return parse(path, content, key)

    monkeypatch.setattr(jsonl_module, "parse", counting)
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


# -- the hand-made bad file, and how problems are reported --------------------------------------

CUT = '{"id":"bd-2","title":"cut mid-JS'
BAD_FILE = [
    line("bd-1", priority=1),
    CUT,
    line("bd-3", priority=9),
    line("bd-4", status="review"),
    line("bd-5", dependencies=[dep("bd-5", "bd-4")]),
    line("bd-6"),
]


def test_the_hand_made_bad_file_reports_each_bad_line_once_and_keeps_it_through_a_close(
    tmp_path: Path,
) -> None:
    """A line cut mid-JSON, priority 9, an unknown status: each named once with its line; the
    other issues are listed; the review issue is never ready and blocks bd-5; closing bd-6
    leaves the bad lines byte for byte, still reported on the same lines."""
    path = write_lines(tmp_path / "issues.jsonl", BAD_FILE)
    store = JsonlStore(path, report=None)
    assert [i.id for i in store.list_issues()] == ["bd-1", "bd-3", "bd-4", "bd-5", "bd-6"]
    assert [i.id for i in store.ready()] == ["bd-1", "bd-6", "bd-3"]
    found = store.problems
    assert [(d.line_no, d.refused) for d in found] == [(2, True), (3, True), (4, True)]
    assert found[0].problem.startswith("invalid JSON (")
    assert found[1].problem.startswith("priority 9 outside 0..4")
    assert found[2].problem.startswith("unknown status 'review'")
    before = path.read_bytes().split(b"\n")
    store.close("bd-6", reason="done", actor="ygg")
    after = path.read_bytes().split(b"\n")
    assert [n for n, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [5]
    assert after[1] == CUT.encode() and after[2:4] == before[2:4]
    assert [d.line_no for d in store.problems] == [2, 3, 4]


def test_each_problem_is_reported_once_however_often_the_file_is_read_or_rewritten(
    tmp_path: Path,
) -> None:
    """The store hands each (issue or line, problem) to ``report`` once: reads, a write that
    moves lines, and a batch report nothing twice; a new problem is reported when it appears."""
    reported: list[str] = []
    path = write_lines(tmp_path / "issues.jsonl", BAD_FILE)
    store = JsonlStore(path, report=lambda found: reported.extend(str(d) for d in found))
    store.ready()
    store.ready("oldest")
    store.get("bd-1")
    store.create("new first", actor="ygg")
    with store.batch():
        store.claim("bd-1", actor="ygg")
        store.close("bd-1", reason="done", actor="ygg")
    store.list_issues()
    assert len(reported) == 3 and [r.split(":")[0] for r in reported] == [
        f"beads file {path} line {n}" for n in (2, 3, 4)
    ]
    path.write_bytes(path.read_bytes() + b'{"id":"bd-7","title":"t","status":"later"}\n')
    store.ready()
    assert len(reported) == 4 and "line 8: unknown status 'later'" in reported[-1]


def test_a_problem_found_later_on_a_reported_line_is_reported_alone(tmp_path: Path) -> None:
    """get() reports a line's own problem; the dependency check that comes with ready() adds
    only the new one, not the line's problem again."""
    reported: list[str] = []
    lines = [line("bd-1", priority=9, dependencies=[dep("bd-1", "bd-gone")])]
    store = JsonlStore(write_lines(tmp_path / "issues.jsonl", lines),
                       report=lambda found: reported.extend(d.problem for d in found))  # fmt: skip
    store.get("bd-1")
    store.ready()
    assert len(reported) == 2
    assert reported[0].startswith("priority 9") and reported[1].startswith("blocks dependency")
    assert len(store.problems) == 1 and len(store.problems[0].problems) == 2


def test_by_default_bad_lines_are_logged_once_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The dispatcher's stores log one warning per bad line, not one per poll."""
    store = JsonlStore(write_lines(tmp_path / "issues.jsonl", BAD_FILE))
    for _ in range(3):
        store.ready()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3 and all(" line " in w for w in warnings)


def test_dependency_problems_are_named_on_the_line_that_holds_the_dependency(
    tmp_path: Path,
) -> None:
    """A dependency on a missing id, a cycle, and a line with two problems: one diagnostic per
    line, warnings (bd's import drops those edges) next to errors; an open issue with closed_at
    is still open."""
    lines = [
        line("bd-a", dependencies=[dep("bd-a", "bd-gone")]),
        line("bd-b", dependencies=[dep("bd-b", "bd-c")]),
        line("bd-c", issue_type="quest", dependencies=[dep("bd-c", "bd-b")]),
        line("bd-d", closed_at="2026-01-02T00:00:00Z"),
    ]
    store = JsonlStore(write_lines(tmp_path / "issues.jsonl", lines), report=None)
    assert [i.id for i in store.ready()] == ["bd-a", "bd-c", "bd-d"]
    found = {d.line_no: d for d in store.problems}
    assert sorted(found) == [1, 3, 4]
    assert "dependency on bd-gone, which is not in the file" in found[1].problem
    assert found[3].problem.startswith("unknown issue type 'quest'")
    assert "closes the cycle bd-c -> bd-b -> bd-c" in found[3].problem
    assert [found[n].severity for n in (1, 3, 4)] == ["warning", "warning", "error"]


def test_a_schema_header_and_current_bd_fields_survive_a_rewrite(tmp_path: Path) -> None:
    """Newer exports start with {"_schema": ...} and carry is_blocked and lease fields: the
    header is skipped and kept byte for byte, the fields kept on the issue and in its line."""
    header = '{"_schema": "beads-jsonl/1"}'
    lease = {"lease_expires_at": "2026-01-01T01:00:00Z", "heartbeat_at": "2026-01-01T00:30:00Z"}
    leased = line("bd-2", status="in_progress", assignee="ygg", is_blocked=False, **lease)
    path = write_lines(tmp_path / "issues.jsonl", [header, line("bd-1"), leased])
    store = JsonlStore(path, report=None)
    assert store.problems == []
    assert store.get("bd-2").model_extra == {"is_blocked": False, **lease}
    store.close("bd-2", reason="done", actor="ygg")
    lines = path.read_text().splitlines()
    assert lines[0] == header and lines[1] == line("bd-1")
    assert json.loads(lines[2])["lease_expires_at"] == "2026-01-01T01:00:00Z"


def test_children_get_bd_style_ids_and_a_parent_child_dependency(tmp_path: Path) -> None:
    """create(parent=P): id P.N one past the highest child, parent-child first, blockers after."""
    path = write_lines(tmp_path / "issues.jsonl", [line("ab-x1"), line("ab-x1.2"), line("ab-y")])
    store = JsonlStore(path)
    child = store.create("child", parent="ab-x1", depends_on=["ab-y"], actor="ygg")
    assert child.id == "ab-x1.3"
    assert [(d.depends_on_id, d.type) for d in child.dependencies] == [
        ("ab-x1", "parent-child"),
        ("ab-y", "blocks"),
    ]
    assert store.create("grandchild", parent=child.id, actor="ygg").id == "ab-x1.3.1"
    with pytest.raises(IssueNotFound):
        store.create("orphan", parent="ab-nope", actor="ygg")
