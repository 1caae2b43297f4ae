"""write_slots edits only the ``slots`` of hosts in a ygg.toml; every other byte stays."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from yggcelery.capacity.tomledit import write_slots
from yggcelery.errors import ConfigError

FILE = '''\
# yggcelery fleet -- edited by hand, keep the comments
broker_url = "redis://127.0.0.1:6379/0"

[hosts.surtr-reasoning]
base_url = "http://surtr:11434"   # the big GPU
model = "deepseek-r1:14b"
slots   =  2    # VRAM-bound
kinds = ["reasoning"]

[hosts."fenrir-chat"]
base_url = "http://fenrir:11434"
notes = """
slots = 99 in this string is not a key
[hosts.skadi-code]
"""
model = "llama3.1:8b"
slots = 3
kinds = [
    "text",
]

[hosts]
skadi-code = { base_url = "http://skadi:8080", model = "qwen2.5-coder", slots = 2, kinds = ["c"] }

[sim]
slots = 7  # not a host
'''


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "ygg.toml"
    path.write_text(FILE)
    return path


def test_only_the_slots_digits_change(toml: Path) -> None:
    """Three hosts in three layouts: each slots value changes, nothing else, byte for byte."""
    old = write_slots(toml, {"surtr-reasoning": 1, "fenrir-chat": 12, "skadi-code": 4})
    expected = (
        FILE.replace("slots   =  2    # VRAM-bound", "slots   =  1    # VRAM-bound")
        .replace('model = "llama3.1:8b"\nslots = 3', 'model = "llama3.1:8b"\nslots = 12')
        .replace("slots = 2, kinds", "slots = 4, kinds")
    )
    assert toml.read_text() == expected
    assert old == {"surtr-reasoning": 2, "fenrir-chat": 3, "skadi-code": 2}
    hosts = tomllib.loads(toml.read_text())["hosts"]
    assert [hosts[n]["slots"] for n in ("surtr-reasoning", "fenrir-chat", "skadi-code")] == [
        1,
        12,
        4,
    ]
    assert tomllib.loads(toml.read_text())["sim"]["slots"] == 7


def test_the_same_values_leave_the_file_untouched(toml: Path) -> None:
    """Writing the slots the file already has keeps every byte (and the file itself)."""
    inode = toml.stat().st_ino
    write_slots(toml, {"surtr-reasoning": 2, "fenrir-chat": 3})
    assert toml.read_bytes() == FILE.encode() and toml.stat().st_ino == inode


def test_crlf_line_ends_and_dotted_keys_are_kept(tmp_path: Path) -> None:
    """A Windows file with ``hosts.x.slots = N`` at the root keeps its CRLFs."""
    path = tmp_path / "ygg.toml"
    text = (
        'hosts.fenrir-chat.base_url = "http://fenrir:11434"\r\n'
        'hosts.fenrir-chat.model = "llama3.1:8b"\r\n'
        "hosts.fenrir-chat.slots = 0x3\r\n"
        'hosts.fenrir-chat.kinds = ["text"]\r\n'
    )
    path.write_bytes(text.encode())
    write_slots(path, {"fenrir-chat": 2})
    assert path.read_bytes() == text.replace("= 0x3", "= 2").encode()


def test_the_file_mode_is_kept(toml: Path) -> None:
    """A file readable only by its owner stays so after the rewrite."""
    os.chmod(toml, 0o600)
    write_slots(toml, {"fenrir-chat": 1})
    assert toml.stat().st_mode & 0o777 == 0o600


def test_a_host_not_in_the_file_is_refused_and_nothing_written(toml: Path) -> None:
    """A host only in the defaults: ConfigError naming the file and host; file untouched."""
    with pytest.raises(ConfigError, match=r"ygg.toml: no \[hosts.ghost\] table to edit"):
        write_slots(toml, {"fenrir-chat": 1, "ghost": 2})
    assert toml.read_text() == FILE


def test_slots_from_an_unsupported_layout_are_refused(tmp_path: Path) -> None:
    """A host inside a nested inline table has no slots line to edit: ConfigError, untouched."""
    path = tmp_path / "ygg.toml"
    text = (
        'hosts = { fenrir = { base_url = "http://x:1", model = "m", slots = 3, kinds = ["t"] } }\n'
    )
    path.write_text(text)
    with pytest.raises(ConfigError, match="no `slots = N` line found for host fenrir"):
        write_slots(path, {"fenrir": 1})
    assert path.read_text() == text


def test_invalid_toml_is_refused_with_the_file_named(tmp_path: Path) -> None:
    """A file tomllib cannot read: ConfigError naming it."""
    path = tmp_path / "ygg.toml"
    path.write_text("[hosts\n")
    with pytest.raises(ConfigError, match=f"settings file {path}: invalid TOML"):
        write_slots(path, {"x": 1})
