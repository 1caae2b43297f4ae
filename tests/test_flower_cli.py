"""`ygg flower` refuses to expose an unauthenticated UI beyond loopback (one line, exit 2)."""

from __future__ import annotations

import subprocess
import sys


def run_flower(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yggcelery", "flower", *args],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_no_auth_on_a_public_address_is_refused_with_one_line() -> None:
    """--no-auth with 0.0.0.0: exit 2, one `ygg: error:` line naming the address, no server."""
    result = run_flower("--address", "0.0.0.0", "--no-auth")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ygg: error:") and "0.0.0.0" in lines[0]
