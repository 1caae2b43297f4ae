"""Edit only the ``slots`` of hosts in a ``ygg.toml``, keeping every other byte as it was.

``tomllib`` reads but does not write, and a round trip through a TOML writer would lose comments,
order and layout. So the file is scanned line by line, tracking the table each line is in, and
the integer after ``slots =`` is replaced in place, for each of these forms::

    [hosts.fenrir-chat]             [hosts]                          hosts.fenrir-chat.slots = 3
    slots = 3   # comment kept      fenrir-chat = { slots = 3 }

Multi-line strings are skipped. The new text is parsed again and must equal the old document
with only those slots changed, or nothing is written; the file is replaced atomically.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yggcelery.errors import ConfigError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_QUOTED_KEY = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'')
_INTEGER = re.compile(r"[+-]?(?:0x[0-9A-Fa-f_]+|0o[0-7_]+|0b[01_]+|\d[\d_]*)")
_INLINE_SLOTS = re.compile(r"([{,]\s*slots\s*=\s*)(" + _INTEGER.pattern + r")")


def write_slots(path: str | Path, slots: Mapping[str, int]) -> dict[str, int]:
    """Set ``hosts.<name>.slots`` for each of ``slots`` in the TOML file at ``path``.

    Returns the old value of each host. Raises :class:`ConfigError` naming the file when a host
    has no ``slots`` line there, or when the edit cannot be made safely; the file is untouched.
    """
    path = Path(path)
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    before = _parse(path, text)
    old = _old_slots(path, before, slots)
    lines = text.splitlines(keepends=True)
    edited = _edit(lines, slots)
    missing = sorted(set(slots) - edited)
    if missing:
        raise ConfigError(
            f"settings file {path}: no `slots = N` line found for host {', '.join(missing)}"
            " (inline tables nested deeper than [hosts] are not edited)"
        )
    new_text = "".join(lines)
    _verify(path, before, new_text, slots)
    if new_text != text:
        _replace(path, new_text.encode("utf-8"))
    return old


def _edit(lines: list[str], slots: Mapping[str, int]) -> set[str]:
    """Replace the slots values in ``lines`` in place; returns the hosts whose line was found."""
    table: list[str] | None = []
    closing: str | None = None
    found: set[str] = set()
    for index, line in enumerate(lines):
        if closing is not None:
            closing = None if closing in line else closing
            continue
        stripped = line.lstrip()
        if stripped.startswith("["):
            table = _header(stripped)
            continue
        parsed = _assignment(stripped)
        if parsed is None or table is None:
            continue
        keys, value_at = parsed
        closing = _opens_multiline(stripped[value_at:])
        edit = _slots_edit([*table, *keys], line, len(line) - len(stripped) + value_at, slots)
        if edit is not None:
            host, lines[index] = edit
            found.add(host)
    return found


def _slots_edit(
    path: list[str], line: str, at: int, slots: Mapping[str, int]
) -> tuple[str, str] | None:
    """``(host, new line)`` when ``line`` (value at ``at``) sets the slots of a host in ``slots``.

    ``path`` is the full key of the line: ``hosts.<name>.slots``, or ``hosts.<name>`` for an
    inline table.
    """
    if len(path) < 2 or path[0] != "hosts" or path[1] not in slots:
        return None
    host, value = path[1], slots[path[1]]
    if len(path) == 3 and path[2] == "slots":
        return host, _set_integer(line, at, value)
    if len(path) == 2 and line.startswith("{", at):
        replaced = _set_inline(line, at, value)
        return None if replaced is None else (host, replaced)
    return None


def _header(stripped: str) -> list[str] | None:
    """The keys of a ``[table]`` header; None for ``[[arrays]]`` (never edited)."""
    if stripped.startswith("[["):
        return None
    parsed = _keys(stripped, 1)
    return parsed[0] if parsed and stripped[parsed[1] :].startswith("]") else None


def _assignment(stripped: str) -> tuple[list[str], int] | None:
    """The dotted key of a ``key = value`` line and where its value starts, or None."""
    parsed = _keys(stripped, 0)
    if parsed is None:
        return None
    keys, at = parsed
    if not stripped[at:].startswith("="):
        return None
    at += 1
    return keys, at + len(stripped[at:]) - len(stripped[at:].lstrip(" \t"))


def _keys(text: str, at: int) -> tuple[list[str], int] | None:
    """A dotted key starting at ``text[at]``: its parts and the position after it (spaces too)."""
    keys: list[str] = []
    while True:
        at = _skip_spaces(text, at)
        match = _QUOTED_KEY.match(text, at) or _BARE_KEY.match(text, at)
        if match is None:
            return None
        token = match.group()
        keys.append(tomllib.loads(f"k = {token}")["k"] if token[0] in "\"'" else token)
        at = _skip_spaces(text, match.end())
        if not text.startswith(".", at):
            return keys, at
        at += 1


def _skip_spaces(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t":
        at += 1
    return at


def _opens_multiline(value: str) -> str | None:
    """The delimiter of a multi-line string that starts here and does not close on this line."""
    for quote in ('"""', "'''"):
        if value.startswith(quote) and quote not in value[3:]:
            return quote
    return None


def _set_integer(line: str, at: int, slots: int) -> str:
    match = _INTEGER.match(line, at)
    if match is None:
        return line  # not an integer: _verify reports it
    return line[: match.start()] + str(slots) + line[match.end() :]


def _set_inline(line: str, at: int, slots: int) -> str | None:
    match = _INLINE_SLOTS.search(line, at)
    if match is None:
        return None
    return line[: match.start(2)] + str(slots) + line[match.end(2) :]


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {path}: invalid TOML: {exc}") from None


def _old_slots(path: Path, data: dict[str, Any], slots: Mapping[str, int]) -> dict[str, int]:
    hosts = data.get("hosts") if isinstance(data.get("hosts"), dict) else {}
    assert isinstance(hosts, dict)
    unknown = sorted(name for name in slots if not isinstance(hosts.get(name), dict))
    if unknown:
        raise ConfigError(f"settings file {path}: no [hosts.{unknown[0]}] table to edit")
    return {name: hosts[name].get("slots") for name in slots}


def _verify(path: Path, before: dict[str, Any], new_text: str, slots: Mapping[str, int]) -> None:
    """The edited text must be the old document with exactly ``slots`` changed."""
    expected = {**before, "hosts": {**before["hosts"]}}
    for name, value in slots.items():
        expected["hosts"][name] = {**before["hosts"][name], "slots": value}
    if _parse(path, new_text) != expected:
        raise ConfigError(f"settings file {path}: could not edit the slots safely; not written")


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, keeping the file's permissions."""
    mode = path.stat().st_mode
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
