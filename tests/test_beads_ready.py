"""The readiness rules and sort orders of ``bd ready`` (FORMAT.md), on small hand-made sets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from beads_helpers import dep

from yggcelery.beads import Issue, ready

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def issue(issue_id: str, **fields: Any) -> Issue:
    data = {"id": issue_id, "title": issue_id, "created_at": "2026-01-01T00:00:00Z", **fields}
    return Issue.model_validate(data)


def ids(issues: list[Issue], sort: str = "priority") -> list[str]:
    return [i.id for i in ready(issues, sort=sort, now=NOW)]  # type: ignore[arg-type]


@pytest.mark.parametrize("status", ["in_progress", "blocked", "deferred", "hooked", "pinned",
                                    "closed", "tombstone", "custom"])  # fmt: skip
def test_only_open_issues_are_ready(status: str) -> None:
    """Any status but open keeps an issue out."""
    assert ids([issue("a", status=status), issue("b")]) == ["b"]


def test_missing_status_means_open() -> None:
    """A line without a status is open."""
    assert ids([Issue.model_validate({"id": "a", "title": "t"})]) == ["a"]


@pytest.mark.parametrize("flag", ["pinned", "ephemeral"])
def test_pinned_and_ephemeral_issues_are_not_ready(flag: str) -> None:
    """Pinned and ephemeral beads are never handed out."""
    assert ids([issue("a", **{flag: True}), issue("b")]) == ["b"]


@pytest.mark.parametrize("kind", ["merge-request", "gate", "molecule", "message", "agent",
                                  "role", "rig"])  # fmt: skip
def test_infrastructure_types_are_not_ready(kind: str) -> None:
    """bd's infrastructure types are excluded; other custom types are not."""
    assert ids([issue("a", issue_type=kind), issue("b", issue_type="convoy")]) == ["b"]


@pytest.mark.parametrize("kind", ["blocks", "conditional-blocks"])
@pytest.mark.parametrize(("blocker_status", "blocked"), [("open", True), ("in_progress", True),
                                                          ("blocked", True), ("closed", False),
                                                          ("pinned", False)])  # fmt: skip
def test_a_blocker_blocks_until_closed_or_pinned(
    kind: str, blocker_status: str, blocked: bool
) -> None:
    """``blocks`` and ``conditional-blocks`` targets block unless closed or pinned."""
    issues = [issue("a", dependencies=[dep("a", "b", kind)]), issue("b", status=blocker_status)]
    assert ("a" not in ids(issues)) is blocked


def test_a_dependency_on_a_missing_or_deleted_issue_does_not_block() -> None:
    """Unknown ids and tombstones do not block."""
    issues = [issue("a", dependencies=[dep("a", "gone"), dep("a", "t")]),
              issue("t", status="tombstone")]  # fmt: skip
    assert ids(issues) == ["a"]


def test_related_and_discovered_from_do_not_block() -> None:
    """Only blocking dependency types block."""
    issues = [issue("a", dependencies=[dep("a", "b", "related"), dep("a", "b", "discovered-from")]),
              issue("b", status="in_progress")]  # fmt: skip
    assert ids(issues) == ["a"]


def test_a_blocked_parent_blocks_children_all_the_way_down() -> None:
    """epic blocked by x: child and grandchild are blocked too; an unrelated sibling is not."""
    issues = [
        issue("x", status="in_progress"),
        issue("epic", issue_type="epic", dependencies=[dep("epic", "x")]),
        issue("child", dependencies=[dep("child", "epic", "parent-child")]),
        issue("grand", dependencies=[dep("grand", "child", "parent-child")]),
        issue("other", dependencies=[dep("other", "free", "parent-child")]),
        issue("free", issue_type="epic"),
    ]
    assert sorted(ids(issues)) == ["free", "other"]


def test_open_children_do_not_block_their_epic() -> None:
    """An epic with open children is itself ready."""
    issues = [issue("epic", issue_type="epic", priority=1),
              issue("child", dependencies=[dep("child", "epic", "parent-child")])]  # fmt: skip
    assert ids(issues) == ["epic", "child"]


def test_a_parent_blocked_only_by_status_does_not_block_children() -> None:
    """Blocking comes from dependencies, as in bd: a status-blocked parent leaves children ready."""
    issues = [issue("epic", status="blocked"),
              issue("child", dependencies=[dep("child", "epic", "parent-child")])]  # fmt: skip
    assert ids(issues) == ["child"]


def test_a_parent_child_cycle_does_not_hang() -> None:
    """Cycles in the tree are walked once."""
    issues = [issue("a", dependencies=[dep("a", "b", "parent-child"), dep("a", "z")]),
              issue("b", dependencies=[dep("b", "a", "parent-child")]),
              issue("z")]  # fmt: skip
    assert ids(issues) == ["z"]


@pytest.mark.parametrize(("child_statuses", "gate", "blocked"), [
    (["open", "closed"], None, True),
    (["closed", "closed"], None, False),
    ([], None, False),
    (["open", "closed"], {"gate": "any-children"}, False),
    (["open", "in_progress"], json.dumps({"gate": "any-children"}), True),
    (["open"], "{}", True),
])  # fmt: skip
def test_waits_for_gates(child_statuses: list[str], gate: Any, blocked: bool) -> None:
    """all-children waits for every child to close; any-children for the first."""
    children = [issue(f"c{n}", status=s, dependencies=[dep(f"c{n}", "g", "parent-child")])
                for n, s in enumerate(child_statuses)]  # fmt: skip
    waiter = issue("w", dependencies=[dep("w", "g", "waits-for", metadata=gate)])
    picked = ids([waiter, issue("g", issue_type="gate"), *children])
    assert ("w" not in picked) is blocked


def test_deferred_issues_and_children_of_deferred_parents_wait() -> None:
    """A future defer_until hides the issue and its direct children; a past one does not."""
    issues = [
        issue("later", defer_until="2026-07-01T00:00:00+02:00"),
        issue("past", defer_until="2026-05-01T00:00:00-07:00"),
        issue("epic", issue_type="epic", status="in_progress", defer_until="2099-01-01T00:00:00Z"),
        issue("child", dependencies=[dep("child", "epic", "parent-child")]),
    ]
    assert ids(issues) == ["past"]


def test_priority_order_is_priority_then_newest_then_id() -> None:
    """p0 first; within a priority newest first; ties by id."""
    issues = [issue("c", priority=1, created_at="2026-01-02T00:00:00Z"),
              issue("b", priority=1, created_at="2026-01-02T00:00:00Z"),
              issue("a", priority=1, created_at="2026-01-01T00:00:00Z"),
              issue("z", priority=0, created_at="2025-01-01T00:00:00Z")]  # fmt: skip
    assert ids(issues) == ["z", "b", "c", "a"]


def test_times_with_different_offsets_compare_as_instants() -> None:
    """09:00+02:00 is before 08:00Z."""
    issues = [issue("utc", created_at="2026-01-01T08:00:00Z"),
              issue("cest", created_at="2026-01-01T09:00:00.123456789+02:00")]  # fmt: skip
    assert ids(issues, "oldest") == ["cest", "utc"]


def test_hybrid_puts_recent_first_by_priority_and_old_ones_oldest_first() -> None:
    """Recent (< 48 h): by priority; older: oldest first, after all recent ones."""
    issues = [issue("old-p0", priority=0, created_at="2026-05-01T00:00:00Z"),
              issue("older-p4", priority=4, created_at="2026-04-01T00:00:00Z"),
              issue("new-p3", priority=3, created_at="2026-06-01T10:00:00Z"),
              issue("new-p1", priority=1, created_at="2026-05-31T00:00:00Z")]  # fmt: skip
    assert ids(issues, "hybrid") == ["new-p1", "new-p3", "older-p4", "old-p0"]


def test_out_of_range_priority_is_kept_and_sorted_as_is(caplog: pytest.LogCaptureFixture) -> None:
    """Priority 7 sorts after 4 and is reported."""
    assert ids([issue("odd", priority=7), issue("low", priority=4)]) == ["low", "odd"]
    assert "priority 7 outside 0..4" in caplog.text


def test_an_unknown_sort_order_is_refused() -> None:
    """Typos in --sort fail loudly."""
    with pytest.raises(ValueError, match="unknown sort order"):
        ids([issue("a")], "random")
