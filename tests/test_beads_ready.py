"""bd's readiness rules, one test per rule, for both rule sets, on small made-up files.

Each file is read twice (:func:`beads_helpers.ready_ids`): by the JSONL store, which works on
its light per-line records, and by ``ready()`` on the full models; both must give the same ids.
Rules that hold in both sets run under each (the ``rules`` fixture); rules that differ have one
test that shows both answers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from beads_helpers import dep, line, ready_ids

from yggcelery.beads import Issue, RuleSetName, ready
from yggcelery.beads.ready import INFRASTRUCTURE_TYPES, rules_named

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["1.0", "current"])
def rules(request: pytest.FixtureRequest) -> RuleSetName:
    """Each rule set in turn, for the rules that hold in both."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def ids(tmp_path: Path) -> Any:
    """``ids(lines, rules=..., sort=...)``: the ready ids of those lines written as a file."""

    def read(lines: list[str], *, rules: RuleSetName, sort: str = "priority") -> list[str]:
        return ready_ids(tmp_path / "issues.jsonl", lines, rules=rules, sort=sort)  # type: ignore[arg-type]

    return read


def model(issue_id: str, **fields: Any) -> Issue:
    return Issue.model_validate(json.loads(line(issue_id, **fields)))


# -- status, flags, types and labels ----------------------------------------------------------


@pytest.mark.parametrize("status", ["in_progress", "blocked", "deferred", "hooked", "pinned",
                                    "closed", "tombstone", "review"])  # fmt: skip
def test_only_open_issues_are_ready(ids: Any, rules: RuleSetName, status: str) -> None:
    """Any status but open keeps an issue out, an unknown one too."""
    assert ids([line("a", status=status), line("b")], rules=rules) == ["b"]


def test_a_line_without_status_is_open(ids: Any, rules: RuleSetName) -> None:
    """A line without a status is open."""
    assert ids(['{"id":"a","title":"t"}'], rules=rules) == ["a"]


@pytest.mark.parametrize("flag", ["pinned", "ephemeral", "wisp"])
def test_pinned_ephemeral_and_legacy_wisp_issues_are_not_ready(
    ids: Any, rules: RuleSetName, flag: str
) -> None:
    """Pinned and ephemeral beads are never handed out; ``"wisp": true`` (0.35-0.37) is
    ephemeral."""
    assert ids([line("a", **{flag: True}), line("b")], rules=rules) == ["b"]


@pytest.mark.parametrize("kind", sorted(INFRASTRUCTURE_TYPES))
def test_infrastructure_types_are_not_ready(ids: Any, rules: RuleSetName, kind: str) -> None:
    """bd's infrastructure types are excluded in both sets; a custom type is not."""
    assert ids([line("a", issue_type=kind), line("b", issue_type="convoy")], rules=rules) == ["b"]


def test_epics_are_ready_in_1_0_and_excluded_now(ids: Any) -> None:
    """GH#5930: current bd leaves epics out of ``bd ready``; bd 1.0 hands them out."""
    lines = [line("epic", issue_type="epic", priority=1), line("task")]
    assert ids(lines, rules="1.0") == ["epic", "task"]
    assert ids(lines, rules="current") == ["task"]


def test_issues_labelled_human_are_ready_in_1_0_and_excluded_now(ids: Any) -> None:
    """Current bd keeps issues labelled ``human`` for people; bd 1.0 has no such rule."""
    lines = [line("h", labels=["backend", "human"], priority=1), line("x", labels=["humane"])]
    assert ids(lines, rules="1.0") == ["h", "x"]
    assert ids(lines, rules="current") == ["x"]


# -- blocking -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["blocks", "conditional-blocks"])
@pytest.mark.parametrize(("blocker_status", "blocked"), [("open", True), ("in_progress", True),
                                                          ("blocked", True), ("review", True),
                                                          ("closed", False),
                                                          ("pinned", False)])  # fmt: skip
def test_a_blocker_blocks_until_closed_or_pinned(
    ids: Any, rules: RuleSetName, kind: str, blocker_status: str, blocked: bool
) -> None:
    """``blocks`` and ``conditional-blocks`` targets block unless closed or pinned; an unknown
    status blocks like any other."""
    lines = [line("a", dependencies=[dep("a", "b", kind)]), line("b", status=blocker_status)]
    assert ("a" not in ids(lines, rules=rules)) is blocked


def test_missing_deleted_and_external_targets_do_not_block(ids: Any, rules: RuleSetName) -> None:
    """An id not in the file, a tombstone and an ``external:`` id block nothing."""
    deps = [dep("a", "gone"), dep("a", "t"), dep("a", "external:gh-9")]
    lines = [line("a", dependencies=deps), line("t", status="tombstone")]
    assert ids(lines, rules=rules) == ["a"]


def test_related_and_discovered_from_do_not_block(ids: Any, rules: RuleSetName) -> None:
    """Only blocking dependency types block."""
    deps = [dep("a", "b", "related"), dep("a", "c", "discovered-from")]
    lines = [line("a", dependencies=deps), line("b", status="in_progress"),
             line("c", status="in_progress")]  # fmt: skip
    assert ids(lines, rules=rules) == ["a"]


def test_a_blocked_parent_blocks_its_children_all_the_way_down(
    ids: Any, rules: RuleSetName
) -> None:
    """A feature blocked by x: its child and grandchild are blocked; a sibling tree is not."""
    lines = [
        line("x", status="in_progress"),
        line("feat", issue_type="feature", dependencies=[dep("feat", "x")]),
        line("child", dependencies=[dep("child", "feat", "parent-child")]),
        line("grand", dependencies=[dep("grand", "child", "parent-child")]),
        line("other", dependencies=[dep("other", "free", "parent-child")]),
        line("free", issue_type="feature"),
    ]
    assert sorted(ids(lines, rules=rules)) == ["free", "other"]


def test_open_children_do_not_block_their_parent(ids: Any, rules: RuleSetName) -> None:
    """A parent with open children is itself ready."""
    lines = [line("feat", issue_type="feature", priority=1),
             line("child", dependencies=[dep("child", "feat", "parent-child")])]  # fmt: skip
    assert ids(lines, rules=rules) == ["feat", "child"]


def test_a_parent_blocked_only_by_status_does_not_block_children(
    ids: Any, rules: RuleSetName
) -> None:
    """Blocking comes from dependencies, as in bd: a status-blocked parent leaves children ready."""
    lines = [line("feat", status="blocked"),
             line("child", dependencies=[dep("child", "feat", "parent-child")])]  # fmt: skip
    assert ids(lines, rules=rules) == ["child"]


def test_a_parent_child_cycle_does_not_hang(ids: Any, rules: RuleSetName) -> None:
    """Cycles in the tree are walked once."""
    lines = [line("a", dependencies=[dep("a", "b", "parent-child"), dep("a", "z")]),
             line("b", dependencies=[dep("b", "a", "parent-child")]),
             line("z")]  # fmt: skip
    assert ids(lines, rules=rules) == ["z"]


def _gate(child_statuses: list[str], metadata: Any) -> list[str]:
    """A waiter on gate g, and g's children in ``child_statuses``."""
    children = [line(f"c{n}", status=s, dependencies=[dep(f"c{n}", "g", "parent-child")])
                for n, s in enumerate(child_statuses)]  # fmt: skip
    extra = {} if metadata is None else {"metadata": metadata}
    waiter = line("w", dependencies=[dep("w", "g", "waits-for", **extra)])
    return [waiter, line("g", issue_type="gate"), *children]


@pytest.mark.parametrize(("child_statuses", "gate", "blocked"), [
    (["open", "closed"], {"gate": "all-children"}, True),
    (["closed", "pinned"], {"gate": "all-children"}, False),
    ([], {"gate": "all-children"}, False),
    (["open", "closed"], {"gate": "any-children"}, False),
    (["open", "in_progress"], json.dumps({"gate": "any-children"}), True),
])  # fmt: skip
def test_waits_for_gates_with_metadata(
    ids: Any, rules: RuleSetName, child_statuses: list[str], gate: Any, blocked: bool
) -> None:
    """all-children waits for every child; any-children for the first to close (metadata as an
    object or as bd's JSON text)."""
    assert ("w" not in ids(_gate(child_statuses, gate), rules=rules)) is blocked


@pytest.mark.parametrize("metadata", [None, "{}", {"note": "no gate here"}])
def test_waits_for_without_a_gate_is_any_children_in_1_0_and_all_children_now(
    ids: Any, metadata: Any
) -> None:
    """One child closed, one open: ready in 1.0 (any-children), blocked now (all-children)."""
    lines = _gate(["open", "closed"], metadata)
    assert "w" in ids(lines, rules="1.0")
    assert "w" not in ids(lines, rules="current")


def test_deferred_issues_and_children_of_deferred_parents_wait(
    ids: Any, rules: RuleSetName
) -> None:
    """A future defer_until hides the issue and its direct children; a past one does not."""
    lines = [
        line("later", defer_until="2099-07-01T00:00:00+02:00"),
        line("past", defer_until="2001-05-01T00:00:00-07:00"),
        line("feat", status="in_progress", defer_until="2099-01-01T00:00:00Z"),
        line("child", dependencies=[dep("child", "feat", "parent-child")]),
    ]
    assert ids(lines, rules=rules) == ["past"]


# -- the edges bd's import drops (readiness effect; the reasons are in test_beads_edges) --------


def test_a_second_edge_to_the_same_issue_is_dropped_the_first_type_wins(
    ids: Any, rules: RuleSetName
) -> None:
    """``related`` then ``blocks`` on one open issue: the blocks edge is dropped, a is ready."""
    lines = [line("a", dependencies=[dep("a", "b", "related"), dep("a", "b")]), line("b")]
    assert ids(lines, rules=rules) == ["a", "b"]


def test_a_self_edge_is_dropped(ids: Any, rules: RuleSetName) -> None:
    """An issue that blocks itself is still ready."""
    assert ids([line("a", dependencies=[dep("a", "a")])], rules=rules) == ["a"]


def test_an_ephemeral_blocker_of_a_regular_issue_is_dropped(ids: Any, rules: RuleSetName) -> None:
    """The edge between an ephemeral and a regular issue goes: the regular one is ready."""
    lines = [line("a", dependencies=[dep("a", "w")]), line("w", ephemeral=True)]
    assert ids(lines, rules=rules) == ["a"]


def test_the_edge_that_closes_a_cycle_is_dropped_in_file_order(
    ids: Any, rules: RuleSetName
) -> None:
    """a blocks-on b (line 1), b blocks-on a (line 2): line 2's edge closes the cycle and goes,
    so b is ready and a waits for it."""
    lines = [line("a", dependencies=[dep("a", "b")]), line("b", dependencies=[dep("b", "a")])]
    assert ids(lines, rules=rules) == ["b"]


# -- order ----------------------------------------------------------------------------------------


def test_within_a_priority_1_0_orders_newest_first_and_current_oldest_first(ids: Any) -> None:
    """GH#4043: current bd is FIFO within a priority; 1.0 was newest first; priority first."""
    lines = [line("new", priority=1, created_at="2026-01-03T00:00:00Z"),
             line("old", priority=1, created_at="2026-01-01T00:00:00Z"),
             line("urgent", priority=0, created_at="2026-01-02T00:00:00Z")]  # fmt: skip
    assert ids(lines, rules="1.0") == ["urgent", "new", "old"]
    assert ids(lines, rules="current") == ["urgent", "old", "new"]


def test_created_at_counts_in_whole_seconds_so_one_second_falls_back_to_id_order(
    ids: Any, rules: RuleSetName
) -> None:
    """00:00:00.6 and 00:00:01.4 both round to second 1: id order, whichever was first; 00:00:02
    is a later second (older first now, newer first in 1.0)."""
    lines = [line("b", created_at="2026-01-01T00:00:00.6Z"),
             line("a", created_at="2026-01-01T00:00:01.400000001Z"),
             line("c", created_at="2026-01-01T00:00:02Z")]  # fmt: skip
    expected = ["c", "a", "b"] if rules == "1.0" else ["a", "b", "c"]
    assert ids(lines, rules=rules) == expected
    assert ids(lines, rules=rules, sort="oldest") == ["a", "b", "c"]


def test_times_with_different_offsets_compare_as_instants(ids: Any, rules: RuleSetName) -> None:
    """09:00+02:00 is before 08:00Z."""
    lines = [line("utc", created_at="2026-01-01T08:00:00Z"),
             line("cest", created_at="2026-01-01T09:00:00.123456789+02:00")]  # fmt: skip
    assert ids(lines, rules=rules, sort="oldest") == ["cest", "utc"]


def test_a_line_without_priority_is_p0(ids: Any, rules: RuleSetName) -> None:
    """bd's import leaves Go's zero value: P0, not P2."""
    lines = [line("p1", priority=1), '{"id":"none","title":"no priority"}']
    assert ids(lines, rules=rules) == ["none", "p1"]


def test_an_out_of_range_priority_sorts_as_the_number_it_is(ids: Any, rules: RuleSetName) -> None:
    """Priority 9 sorts after 4, -1 before 0 (each line is also reported: test_beads_jsonl)."""
    lines = [line("nine", priority=9), line("four", priority=4), line("minus", priority=-1)]
    assert ids(lines, rules=rules) == ["minus", "four", "nine"]


def test_hybrid_puts_recent_first_by_priority_and_old_ones_oldest_first(
    rules: RuleSetName,
) -> None:
    """Recent (< 48 h): by priority; older: oldest first, after all recent ones."""
    issues = [model("old-p0", priority=0, created_at="2026-05-01T00:00:00Z"),
              model("older-p4", priority=4, created_at="2026-04-01T00:00:00Z"),
              model("new-p3", priority=3, created_at="2026-06-01T10:00:00Z"),
              model("new-p1", priority=1, created_at="2026-05-31T00:00:00Z")]  # fmt: skip
    picked = ready(issues, sort="hybrid", now=NOW, rules=rules)
    assert [i.id for i in picked] == ["new-p1", "new-p3", "older-p4", "old-p0"]


def test_an_unknown_sort_order_or_rule_set_is_refused() -> None:
    """Typos in --sort or beads.rules fail loudly."""
    with pytest.raises(ValueError, match="unknown sort order"):
        ready([model("a")], sort="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown rule set '0\.9'"):
        rules_named("0.9")
