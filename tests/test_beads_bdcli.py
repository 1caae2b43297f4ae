"""BdCliStore against ``tests/fakebd/bd``.

The real ``bd`` binary cannot be installed here (its npm package downloads it at install time),
so these tests run a small stand-in executable that follows FORMAT.md's CLI contract (flags, JSON
on stdout, the 2.0 envelope, JSON errors on stderr). They check our side of that contract.
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


@pytest.fixture(params=["plain", "envelope"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> BdCliStore:
    """A fake bd workspace with three issues, answering plainly or in the 2.0 envelope."""
    if request.param == "envelope":
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
    """list, ready and show parse bd's indented JSON, enveloped or not."""
    assert [i.id for i in store.list_issues()] == ["bd-1", "bd-2", "bd-3"]
    assert [i.id for i in store.ready()] == ["bd-1"]
    assert store.get("bd-2").dependencies[0].depends_on_id == "bd-1"
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
