"""The changes a store makes to one issue, as pure functions on the line's own JSON object.

Editing the decoded object (not a model) keeps the line's unknown fields, its key order and the
exact spelling of the values it does not touch. Each function returns whether it changed anything,
so a store can skip the write (closing a closed issue) and set ``updated_at`` otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from yggcelery.beads.model import format_timestamp, utc_now
from yggcelery.errors import ClaimConflict

Obj = dict[str, Any]
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def dumps(obj: Obj) -> bytes:
    """One compact line, as bd writes them (UTF-8, no spaces)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def touch(obj: Obj, now: datetime) -> None:
    """Every write sets ``updated_at``."""
    obj["updated_at"] = format_timestamp(now)


def claim(obj: Obj, actor: str, now: datetime) -> bool:
    """Take the issue for ``actor``; :class:`ClaimConflict` when someone else holds it or it is
    not open. Claiming again by the same actor changes nothing."""
    status = obj.get("status") or "open"
    holder = obj.get("assignee") or None
    if holder is not None and holder != actor:
        raise ClaimConflict(obj["id"], holder)
    if status == "in_progress" and holder == actor:
        return False
    if status != "open":
        raise ClaimConflict(obj["id"], f"nobody (status {status})")
    obj["status"] = "in_progress"
    obj["assignee"] = actor
    obj["started_at"] = format_timestamp(now)
    return True


def set_status(obj: Obj, status: str, note: str | None, now: datetime) -> bool:
    """Any status, keeping ``closed_at`` present exactly when the issue is closed."""
    before = dict(obj)
    obj["status"] = status
    if status == "closed":
        obj.setdefault("closed_at", format_timestamp(now))
    else:
        obj.pop("closed_at", None)
    append_note(obj, note)
    return obj != before


def reopen(obj: Obj, note: str | None) -> bool:
    """Back to ``open`` with no assignee, start or close."""
    before = dict(obj)
    obj["status"] = "open"
    for key in ("assignee", "started_at", "closed_at", "close_reason"):
        obj.pop(key, None)
    append_note(obj, note)
    return obj != before


def close(obj: Obj, reason: str, now: datetime) -> bool:
    """Close with ``reason``; a closed issue stays exactly as it is."""
    if obj.get("status") == "closed":
        return False
    obj["status"] = "closed"
    obj["closed_at"] = format_timestamp(now)
    obj["close_reason"] = reason
    return True


def append_note(obj: Obj, note: str | None) -> None:
    """Add ``note`` as a new paragraph of ``notes``."""
    if note:
        notes = obj.get("notes") or ""
        obj["notes"] = f"{notes}\n\n{note}" if notes else note


def comment(obj: Obj, text: str, author: str, now: datetime) -> Obj:
    """Append a comment (bd 1.x style: a UUID id) and return it."""
    entry: Obj = {
        "id": str(uuid.uuid4()),
        "issue_id": obj["id"],
        "author": author,
        "text": text,
        "created_at": format_timestamp(now),
    }
    comments = obj.get("comments")
    obj["comments"] = [*comments, entry] if isinstance(comments, list) else [entry]
    return entry


def new_issue(
    issue_id: str,
    title: str,
    *,
    fields: Obj,
    labels: Sequence[str],
    depends_on: Sequence[str],
    parent: str | None = None,
    actor: str,
    now: datetime,
) -> Obj:
    """A new open issue line, keys in bd's order, empty values left out as bd does; a child of
    ``parent`` gets a ``parent-child`` dependency on it before its blockers."""
    stamp = format_timestamp(now)
    obj: Obj = {"id": issue_id, "title": title}
    for key in ("description", "design", "acceptance_criteria"):
        if fields.get(key):
            obj[key] = fields[key]
    obj.update(status="open", priority=fields["priority"], issue_type=fields["issue_type"])
    obj.update(created_at=stamp, created_by=actor, updated_at=stamp)
    if labels:
        obj["labels"] = list(labels)
    if fields.get("metadata") is not None:
        obj["metadata"] = fields["metadata"]
    links = [(parent, "parent-child")] if parent else []
    links += [(target, "blocks") for target in depends_on]
    if links:
        obj["dependencies"] = [
            {"issue_id": issue_id, "depends_on_id": target, "type": kind,
             "created_at": stamp, "created_by": actor}
            for target, kind in links
        ]  # fmt: skip
    return obj


def id_prefix(ids: Iterable[str]) -> str:
    """The most common prefix of ``ids`` (``bt`` of ``bt-fbx6``; children ``x.N`` count as ``x``),
    else ``bd``."""
    counts = Counter(i.split(".", 1)[0].rsplit("-", 1)[0] for i in ids if "-" in i)
    return counts.most_common(1)[0][0] if counts else "bd"


def child_id(parent: str, taken: Iterable[str]) -> str:
    """bd's id for the next child of ``parent``: ``parent.N``, one past the highest N taken."""
    stem = f"{parent}."
    numbers = [
        int(rest)
        for i in taken
        if i.startswith(stem) and (rest := i[len(stem) :]).isascii() and rest.isdigit()
    ]
    return f"{stem}{max(numbers, default=0) + 1}"


def new_id(prefix: str, title: str, taken: Collection[str]) -> str:
    """``prefix-hash``: a short base36 hash, lengthened until it is not ``taken``."""
    seed = f"{title}\0{utc_now().isoformat()}\0{os.getpid()}\0{uuid.uuid4()}".encode()
    number = int.from_bytes(hashlib.sha256(seed).digest()[:16], "big")
    digits = ""
    while number:
        number, rest = divmod(number, 36)
        digits += _BASE36[rest]
    for length in range(4, len(digits) + 1):
        candidate = f"{prefix}-{digits[:length]}"
        if candidate not in taken:
            return candidate
    return f"{prefix}-{uuid.uuid4().hex}"
