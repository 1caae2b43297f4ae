"""Helpers for the Beads tests: the real sample files, tiny issue lines, and worker functions
that run in separate processes (they must be importable, so they live here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from yggcelery.beads import JsonlStore, RuleSetName, ready
from yggcelery.errors import ClaimConflict
from yggcelery.settings import SortOrder

#: Real ``issues.jsonl`` files from public repositories, read-only, beside the repository.
SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "beads" / "samples"
ORGANICE = SAMPLES / "200ok-ch__organice.jsonl"
SKYHOOK = SAMPLES / "NVIDIA__skyhook.jsonl"
ATARI = SAMPLES / "NavarrePratt__atari.jsonl"


def copy_sample(sample: Path, folder: Path) -> Path:
    """A writable copy of ``sample`` as ``folder/.beads/issues.jsonl``."""
    target = folder / ".beads" / "issues.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sample, target)
    return target


def line(issue_id: str, **fields: Any) -> str:
    """One compact issue line with a title and a created_at, plus ``fields`` (a closed one gets
    a ``closed_at``, as bd requires)."""
    obj = {"id": issue_id, "title": f"title of {issue_id}", "status": "open", "priority": 2,
           "issue_type": "task", "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    obj.update(fields)
    if obj["status"] == "closed":
        obj.setdefault("closed_at", "2026-01-02T00:00:00Z")
    return json.dumps(obj, separators=(",", ":"))


def dep(child: str, target: str, kind: str = "blocks", **extra: Any) -> dict[str, Any]:
    return {"issue_id": child, "depends_on_id": target, "type": kind, **extra}


def ready_ids(
    path: Path, lines: list[str], *, rules: RuleSetName, sort: SortOrder = "priority"
) -> list[str]:
    """The ready ids of ``lines`` written as a file, through the store (its light records) and
    through ``ready()`` on the full models: the two must agree."""
    write_lines(path, lines)
    store = JsonlStore(path, rules=rules, report=None)
    through_store = [i.id for i in store.ready(sort)]
    assert [i.id for i in ready(store.list_issues(), sort=sort, rules=rules)] == through_store
    return through_store


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(text + "\n" for text in lines), encoding="utf-8")
    return path


def close_many(path: str, ids: list[str], barrier: Any) -> None:
    """Worker: wait for the others, then close each of ``ids`` in turn."""
    store = JsonlStore(path)
    barrier.wait()
    for issue_id in ids:
        store.close(issue_id, reason=f"closed by worker of {ids[0]}", actor="worker")


def claim_one(path: str, issue_id: str, actor: str, barrier: Any, results: Any) -> None:
    """Worker: wait for the others, then try to claim ``issue_id``; report the outcome."""
    store = JsonlStore(path)
    barrier.wait()
    try:
        store.claim(issue_id, actor=actor)
        results.put((actor, "won"))
    except ClaimConflict:
        results.put((actor, "conflict"))
