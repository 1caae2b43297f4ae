"""The Beads layer on real ``issues.jsonl`` files from public repositories.

Expected values were worked out by hand from the files and FORMAT.md's rules (noted per test),
not by running the code under test.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from beads_helpers import ATARI, ORGANICE, SKYHOOK, copy_sample

from yggcelery.beads import JsonlStore, RuleSetName, ready
from yggcelery.settings import SortOrder

# organice: 7 open issues, every parent closed, no blocks deps, no epic, no "human" label -> all 7
# ready under both rule sets. created_at in whole seconds (rounded), all 2026-01-06 +01:00:
# f9s 18:52:26, 35c 18:52:27, 44c 18:52:53, s2v 18:52:55, a7a 18:52:56 (p2);
# b5e 19:48:19, 6ic 19:48:21 (p1). No two in one second.
ORGANICE_1_0 = ["organice-6ic", "organice-b5e", "organice-a7a", "organice-s2v",
                "organice-44c", "organice-35c", "organice-f9s"]  # fmt: skip
ORGANICE_CURRENT = ["organice-b5e", "organice-6ic", "organice-f9s", "organice-35c",
                    "organice-44c", "organice-s2v", "organice-a7a"]  # fmt: skip
ORGANICE_OLDEST = ["organice-f9s", "organice-35c", "organice-44c", "organice-s2v",
                   "organice-a7a", "organice-b5e", "organice-6ic"]  # fmt: skip

# The ready set and order of every sample under both rule sets. skyhook: the open epic (p1) is
# all that is open (its six children are closed); 1.0 hands out epics, current bd does not.
# atari: everything closed or deleted.
EVERY_SAMPLE = [
    (ORGANICE, "1.0", "priority", ORGANICE_1_0),
    (ORGANICE, "current", "priority", ORGANICE_CURRENT),
    (ORGANICE, "1.0", "oldest", ORGANICE_OLDEST),
    (ORGANICE, "current", "oldest", ORGANICE_OLDEST),
    (SKYHOOK, "1.0", "priority", ["skyhook-gld"]),
    (SKYHOOK, "current", "priority", []),
    (SKYHOOK, "1.0", "oldest", ["skyhook-gld"]),
    (SKYHOOK, "current", "oldest", []),
    (ATARI, "1.0", "priority", []),
    (ATARI, "current", "priority", []),
    (ATARI, "1.0", "oldest", []),
    (ATARI, "current", "oldest", []),
]


@pytest.mark.parametrize(("sample", "rules", "sort", "expected"), EVERY_SAMPLE)
def test_every_sample_ready_set_and_order_under_both_rule_sets(
    sample: Path, rules: RuleSetName, sort: SortOrder, expected: list[str]
) -> None:
    """The store and ready() on the full models agree with the hand-worked answer."""
    store = JsonlStore(sample, rules=rules)
    assert [i.id for i in store.ready(sort)] == expected
    assert [i.id for i in ready(store.list_issues(), sort=sort, rules=rules)] == expected


@pytest.mark.parametrize(
    ("sample", "counts"),
    [
        (ORGANICE, {"closed": 13, "open": 7, "tombstone": 3}),
        (SKYHOOK, {"closed": 6, "open": 1}),
        (ATARI, {"closed": 130, "tombstone": 1}),
    ],
)
def test_every_issue_of_each_sample_is_read_with_its_status(
    sample: Path, counts: dict[str, int]
) -> None:
    """Each sample yields every issue line, counted by status, and nothing to report: not one
    line bd would refuse, no dependency its import would drop."""
    store = JsonlStore(sample)
    assert Counter(i.status for i in store.list_issues()) == counts
    assert store.problems == []
    assert store.check() == []


@pytest.mark.parametrize("rules", ["1.0", "current"])
def test_organice_hybrid_order_is_oldest_first_when_nothing_is_recent(rules: RuleSetName) -> None:
    """With every issue older than 48 h, hybrid is the oldest order (both rule sets)."""
    issues = JsonlStore(ORGANICE).list_issues()
    picked = ready(issues, sort="hybrid", now=datetime(2026, 3, 1, tzinfo=UTC), rules=rules)
    assert [i.id for i in picked] == ORGANICE_OLDEST


@pytest.mark.parametrize("rules", ["1.0", "current"])
def test_organice_hybrid_puts_recent_issues_first_by_priority(rules: RuleSetName) -> None:
    """One hour after the last creation every issue is recent: hybrid sorts by priority, then
    oldest first within a priority (both rule sets)."""
    issues = JsonlStore(ORGANICE).list_issues()
    now = datetime(2026, 1, 6, 20, 0, tzinfo=UTC)
    picked = ready(issues, sort="hybrid", now=now, rules=rules)
    assert [i.id for i in picked] == ["organice-b5e", "organice-6ic", "organice-f9s",
                                      "organice-35c", "organice-44c", "organice-s2v",
                                      "organice-a7a"]  # fmt: skip


@pytest.mark.parametrize(("rules", "expected"), [("1.0", ["skyhook-gld.1", "skyhook-gld"]),
                                                  ("current", ["skyhook-gld.1"])])  # fmt: skip
def test_skyhook_reopened_blocker_blocks_what_depends_on_it(
    tmp_path: Path, rules: RuleSetName, expected: list[str]
) -> None:
    """Reopening gld.1 and gld.2: gld.2 is blocked by gld.1 (open); gld.1 (p0) is ready, and
    the epic (p1) too where epics are handed out."""
    store = JsonlStore(copy_sample(SKYHOOK, tmp_path), rules=rules)
    store.reopen("skyhook-gld.1", actor="t")
    store.reopen("skyhook-gld.2", actor="t")
    assert [i.id for i in store.ready()] == expected


def test_skyhook_integer_comment_ids_are_read() -> None:
    """Pre-1.0 comments have integer ids."""
    comments = JsonlStore(SKYHOOK).get("skyhook-gld.4").comments
    assert [(c.id, c.author) for c in comments] == [(1, "Brian Lockwood")]


def test_atari_has_nothing_ready_and_keeps_rust_port_fields() -> None:
    """All closed or deleted: nothing is ready; the Rust port's extra fields survive."""
    store = JsonlStore(ATARI)
    assert store.ready() == []
    assert store.get("atari-2zi").model_extra == {
        "source_repo": ".", "compaction_level": 0, "original_size": 0,
    }  # fmt: skip


@pytest.mark.parametrize("rules", ["1.0", "current"])
@pytest.mark.parametrize("sample", [ORGANICE, SKYHOOK, ATARI])
def test_store_and_pure_function_agree(sample: Path, rules: RuleSetName) -> None:
    """The store's fast path and ``ready()`` on full models give the same answer."""
    store = JsonlStore(sample, rules=rules)
    for sort in ("priority", "oldest", "hybrid"):
        expected = [i.id for i in ready(store.list_issues(), sort=sort, rules=rules)]
        assert [i.id for i in store.ready(sort)] == expected


@pytest.mark.parametrize(("sample", "issue_id"), [(ORGANICE, "organice-6ic"),
                                                  (SKYHOOK, "skyhook-gld")])  # fmt: skip
def test_closing_one_issue_changes_that_line_and_no_other_byte(
    tmp_path: Path, sample: Path, issue_id: str
) -> None:
    """Round trip: only the closed issue's line differs after the write."""
    _assert_one_line_changed(tmp_path, sample, issue_id, "close")


def test_reopening_one_atari_issue_changes_that_line_and_no_other_byte(tmp_path: Path) -> None:
    """Round trip on the Rust port's file (everything closed there): reopen one issue."""
    _assert_one_line_changed(tmp_path, ATARI, "bd-100", "reopen")


def _assert_one_line_changed(tmp_path: Path, sample: Path, issue_id: str, action: str) -> None:
    path = copy_sample(sample, tmp_path)
    before = path.read_bytes().split(b"\n")
    store = JsonlStore(path)
    if action == "close":
        store.close(issue_id, reason="done in test", actor="t")
    else:
        store.reopen(issue_id, actor="t")
    after = path.read_bytes().split(b"\n")
    changed = [n for n, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(changed) == 1
    assert f'"id":"{issue_id}"'.encode() in after[changed[0]]
