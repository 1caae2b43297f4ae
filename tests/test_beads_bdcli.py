"""BdCliStore against ``tests/fakebd/bd``.

The real ``bd`` binary cannot be installed here (its npm package downloads it at install time),
so these tests run a small stand-in executable that follows FORMAT.md's CLI contract (flags, JSON
on stdout, JSON errors on stderr) and answers in the shapes of each era: 0.x (single objects,
``null``), 1.0 (plain arrays, the envelope when asked) and current bd (always the envelope,
``IssueWithCounts`` rows with ``is_blocked``, lease fields, ``bd show``'s dependencies as
issues). They check our side of that contract.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from beads_helpers import dep, line, write_lines

from yggcelery.beads import BdCliStore, open_store
from yggcelery.beads.jsonl import JsonlStore
from yggcelery.errors import ClaimConflict, IssueNotFound, PermanentBdError, TransientBdError
from yggcelery.settings import load_settings

FAKE_BD = Path(__file__).parent / "fakebd" / "bd"


@pytest.fixture(params=["0.x", "1.0", "1.0+envelope", "current"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> BdCliStore:
    """A fake bd workspace with three issues, answering in the shapes of one era."""
    era, _, envelope = request.param.partition("+")
    monkeypatch.setenv("FAKEBD_ERA", era)
    if envelope:
        monkeypatch.setenv("BD_JSON_ENVELOPE", "1")
    beads = tmp_path / ".beads"
    write_lines(beads / "issues.jsonl", [
        line("bd-1", priority=1),
        line("bd-2", dependencies=[dep("bd-2", "bd-1")]),
        line("bd-3", status="closed"),
    ])  # fmt: skip
    (beads / "config.yaml").write_text("prefix: bd\n")
    return BdCliStore(beads, binary=str(FAKE_BD), actor="ygg")


def calls(store: BdCliStore) -> list[list[str]]:
    return [json.loads(t) for t in (store.beads_dir / "calls.log").read_text().splitlines()]


def test_reads_list_ready_and_show(store: BdCliStore) -> None:
    """list, ready and show parse bd's indented JSON in every era's shape; show's dependencies
    come back as records whichever way bd lists them."""
    assert [i.id for i in store.list_issues()] == ["bd-1", "bd-2", "bd-3"]
    assert [i.id for i in store.ready()] == ["bd-1"]
    [blocker] = store.get("bd-2").dependencies
    assert (blocker.issue_id, blocker.depends_on_id, blocker.type) == ("bd-2", "bd-1", "blocks")
    assert calls(store)[1] == [
        "--json",
        "--actor",
        "ygg",
        "ready",
        "--limit",
        "0",
        "--sort",
        "priority",
    ]


def test_claim_is_idempotent_and_conflicts_for_others(store: BdCliStore) -> None:
    """bd's claim error for the same actor is success; for another actor, ClaimConflict."""
    assert store.claim("bd-1", actor="ygg").status == "in_progress"
    assert store.claim("bd-1", actor="ygg").assignee == "ygg"
    with pytest.raises(ClaimConflict):
        store.claim("bd-1", actor="other")


def test_writes_go_through_bd(store: BdCliStore) -> None:
    """close, block with a note, reopen, comment and create each run one bd command."""
    assert store.close("bd-1", reason="done", actor="ygg").close_reason == "done"
    assert [i.id for i in store.ready()] == ["bd-2"]
    assert store.set_status("bd-2", "blocked", note="why", actor="ygg").notes == "why"
    assert store.reopen("bd-2", actor="ygg").status == "open"
    comment = store.add_comment("bd-2", "--looks like a flag\nsecond line", author="me")
    assert (comment.text, comment.author) == ("--looks like a flag\nsecond line", "me")
    created = store.create("-dash title", priority=0, labels=["a", "b"], depends_on=["bd-2"],
                           metadata={"k": 1}, actor="ygg")  # fmt: skip
    assert (created.title, created.labels, created.metadata) == (
        "-dash title",
        ["a", "b"],
        {"k": 1},
    )
    assert created.dependencies[0].depends_on_id == "bd-2"
    child = store.create("child", parent="bd-2", actor="ygg")
    assert (child.id, child.parent_ids) == ("bd-2.1", ["bd-2"])
    assert calls(store)[-1][-4:] == ["--parent", "bd-2", "--", "child"]


def test_ready_is_bd_answer_as_it_is_in_bd_order(
    store: BdCliStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bd decides what is ready: an epic, an issue labelled human and a leased one come back in
    bd's order (no JSONL rule set would give it), current bd's fields kept on each."""
    rows = [
        {"id": "bd-9", "title": "epic", "issue_type": "epic", "priority": 3, "is_blocked": False,
         "dependency_count": 0, "dependent_count": 2, "comment_count": 0},
        {"id": "bd-7", "title": "for people", "labels": ["human"], "priority": 0,
         "lease_expires_at": "2026-01-01T01:00:00Z", "heartbeat_at": "2026-01-01T00:30:00Z"},
        {"id": "bd-1", "title": "t", "priority": 1, "parent": "bd-9"},
    ]  # fmt: skip
    answer = tmp_path / "ready.json"
    answer.write_text(json.dumps(rows))  # the stand-in wraps it as its era does
    monkeypatch.setenv("FAKEBD_READY_FILE", str(answer))
    got = store.ready()
    assert [i.id for i in got] == ["bd-9", "bd-7", "bd-1"]
    assert got[0].model_extra is not None and got[0].model_extra["dependent_count"] == 2
    assert got[1].model_extra == {"lease_expires_at": "2026-01-01T01:00:00Z",
                                  "heartbeat_at": "2026-01-01T00:30:00Z"}  # fmt: skip


def test_current_bd_rows_and_claims_keep_is_blocked_and_lease_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Current bd: list rows carry counts and is_blocked, a claim carries its lease; ready
    leaves out what current bd leaves out (the stand-in's rules, not ours)."""
    monkeypatch.setenv("FAKEBD_ERA", "current")
    beads = tmp_path / ".beads"
    blocked = line("bd-3", dependencies=[dep("bd-3", "bd-1")])
    write_lines(beads / "issues.jsonl", [line("bd-1"), line("bd-2", issue_type="epic"), blocked])
    store = BdCliStore(beads, binary=str(FAKE_BD), actor="ygg")
    rows = {i.id: i.model_extra or {} for i in store.list_issues()}
    assert (rows["bd-3"]["is_blocked"], rows["bd-3"]["dependency_count"]) == (True, 1)
    assert [i.id for i in store.ready()] == ["bd-1"]
    claimed = store.claim("bd-1", actor="ygg")
    assert {"lease_expires_at", "heartbeat_at"} <= (claimed.model_extra or {}).keys()


def test_an_answer_bd_should_not_give_is_a_permanent_error(
    store: BdCliStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An issue that no model can hold (a title that is a list) is named, not a traceback."""
    answer = tmp_path / "ready.json"
    answer.write_text(json.dumps([{"id": "bd-1", "title": ["not", "text"]}]))
    monkeypatch.setenv("FAKEBD_READY_FILE", str(answer))
    with pytest.raises(PermanentBdError, match=r"bd ready failed: answer has an unusable issue"):
        store.ready()


def test_bd_errors_map_onto_the_error_tree(
    store: BdCliStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """not found, a locked database and anything else become the matching errors."""
    with pytest.raises(IssueNotFound):
        store.get("nope")
    monkeypatch.setenv("FAKEBD_FAIL", "database_locked")
    with pytest.raises(TransientBdError):
        store.ready()
    monkeypatch.setenv("FAKEBD_FAIL", "invalid_field")
    with pytest.raises(PermanentBdError, match="invalid_field"):
        store.ready()


def test_a_missing_binary_is_a_permanent_error(tmp_path: Path) -> None:
    """A bd that is not there cannot start."""
    with pytest.raises(PermanentBdError, match="cannot run"):
        BdCliStore(tmp_path, binary=str(tmp_path / "no-bd"), actor="ygg").ready()


def test_auto_picks_bd_for_a_bd_workspace_with_bd_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: BdCliStore
) -> None:
    """open_store: bd when .beads has bd's database and bd is on PATH, else the JSONL file."""
    monkeypatch.setenv("PATH", f"{FAKE_BD.parent}:/usr/bin:/bin")
    settings = load_settings(beads={"dir": store.beads_dir})
    assert isinstance(open_store(settings), BdCliStore)
    (store.beads_dir / "config.yaml").unlink()
    assert isinstance(open_store(settings), JsonlStore)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    (store.beads_dir / "beads.db").write_text("")
    assert isinstance(open_store(settings), JsonlStore)
