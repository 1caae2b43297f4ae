"""Start-up failures: one clear line on stderr and exit status 2, from the real `ygg` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def ygg(
    *args: str, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("YGG_")}
    return subprocess.run(
        [sys.executable, "-m", "yggcelery", *args],
        env={**base, **(env or {})}, cwd=cwd, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ygg: error: ")
    return lines[0]


def test_unknown_host_for_a_worker(tmp_path: Path) -> None:
    """`ygg worker nosuchhost` names the host and the configured ones."""
    line = one_error_line(ygg("worker", "nosuchhost", cwd=tmp_path))
    assert "nosuchhost" in line and "skadi-code" in line


def test_bad_broker_url(tmp_path: Path) -> None:
    """`YGG_BROKER_URL=http://x ygg loop` names the key and the bad scheme."""
    line = one_error_line(ygg("loop", env={"YGG_BROKER_URL": "http://x"}, cwd=tmp_path))
    assert "broker_url" in line and "'http'" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[hosts.skadi\n", "invalid TOML"),
        ("[timeouts]\nvisibility_s = 5\n", "visibility_s"),
        ("[dispatch]\npoll_seconds = 1\n", "poll_seconds"),
    ],
    ids=["syntax", "visibility-below-hard-limit", "unknown-key"],
)
def test_invalid_settings_file(tmp_path: Path, text: str, expected: str) -> None:
    """A broken ygg.toml (syntax, a rule, a typo) names the file and the problem."""
    (tmp_path / "ygg.toml").write_text(text)
    line = one_error_line(ygg("loop", cwd=tmp_path))
    assert "ygg.toml" in line and expected in line
