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

from yggcelery.beads import JsonlStore, ready

# organice: 7 open issues, every parent closed, no blocks deps -> all 7 ready.
# p1: 6ic (19:48:20.93) newer than b5e (19:48:19.03); p2 newest first: a7a, s2v, 44c, 35c, f9s.
ORGANICE_BY_PRIORITY = ["organice-6ic", "organice-b5e", "organice-a7a", "organice-s2v",
                        "organice-44c", "organice-35c", "organice-f9s"]  # fmt: skip
ORGANICE_OLDEST = ["organice-f9s", "organice-35c", "organice-44c", "organice-s2v",
                   "organice-a7a", "organice-b5e", "organice-6ic"]  # fmt: skip


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
    """Each sample yields every issue line, counted by status, and no problems."""
    store = JsonlStore(sample)
    assert Counter(i.status for i in store.list_issues()) == counts
    assert store.problems == []


def test_organice_ready_set_in_priority_order() -> None:
    """Children of closed parents are ready; priority first, then newest first."""
    assert [i.id for i in JsonlStore(ORGANICE).ready()] == ORGANICE_BY_PRIORITY


def test_organice_ready_set_oldest_first() -> None:
    """The oldest order is creation time ascending across offsets."""
    assert [i.id for i in JsonlStore(ORGANICE).ready("oldest")] == ORGANICE_OLDEST


def test_organice_hybrid_order_is_oldest_first_when_nothing_is_recent() -> None:
    """With every issue older than 48 h, hybrid is the oldest order."""
    issues = JsonlStore(ORGANICE).list_issues()
    picked = ready(issues, sort="hybrid", now=datetime(2026, 3, 1, tzinfo=UTC))
    assert [i.id for i in picked] == ORGANICE_OLDEST


def test_organice_hybrid_puts_recent_issues_first_by_priority() -> None:
    """One hour after the last creation every issue is recent: hybrid sorts by priority, then
    oldest first within a priority."""
    issues = JsonlStore(ORGANICE).list_issues()
    picked = ready(issues, sort="hybrid", now=datetime(2026, 1, 6, 20, 0, tzinfo=UTC))
    assert [i.id for i in picked] == ["organice-b5e", "organice-6ic", "organice-f9s",
                                      "organice-35c", "organice-44c", "organice-s2v",
                                      "organice-a7a"]  # fmt: skip


def test_skyhook_only_the_open_epic_is_ready() -> None:
    """Its six children are closed, so the epic alone is ready."""
    assert [i.id for i in JsonlStore(SKYHOOK).ready()] == ["skyhook-gld"]


def test_skyhook_reopened_blocker_blocks_what_depends_on_it(tmp_path: Path) -> None:
    """Reopening gld.1 and gld.2: gld.2 is blocked by gld.1 (open); gld.1 (p0) and the epic (p1)
    are ready."""
    store = JsonlStore(copy_sample(SKYHOOK, tmp_path))
    store.reopen("skyhook-gld.1", actor="t")
    store.reopen("skyhook-gld.2", actor="t")
    assert [i.id for i in store.ready()] == ["skyhook-gld.1", "skyhook-gld"]


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


@pytest.mark.parametrize("sample", [ORGANICE, SKYHOOK, ATARI])
def test_store_and_pure_function_agree(sample: Path) -> None:
    """The store's fast path and ``ready()`` on full models give the same answer."""
    store = JsonlStore(sample)
    for sort in ("priority", "oldest", "hybrid"):
        expected = [i.id for i in ready(store.list_issues(), sort=sort)]  # type: ignore[arg-type]
        assert [i.id for i in store.ready(sort)] == expected  # type: ignore[arg-type]


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
