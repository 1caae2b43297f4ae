"""``ygg sim`` and ``python -m yggcelery.sim`` as real subprocesses, stopped by signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from yggcelery.testing.redis import free_port

YGG = str(Path(sys.executable).with_name("ygg"))


@pytest.fixture
def config(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    """A ygg.toml with two hosts on free ports."""
    ports = {"alpha": free_port(), "beta": free_port()}
    text = "".join(
        f'[hosts.{name}]\nbase_url = "http://127.0.0.1:{port}"\nmodel = "{name}:1b"\n'
        f'slots = 2\nkinds = ["text"]\n\n'
        for name, port in ports.items()
    )
    path = tmp_path / "ygg.toml"
    path.write_text(text)
    yield path, ports


def start(
    cmd: list[str], *, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start ``cmd`` and read its stdout up to the ready line."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("sim: ready"):
            break
    return proc, "".join(lines)


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, str]:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


def test_ygg_sim_serves_the_chosen_hosts_and_stops_on_sigterm(
    config: tuple[Path, dict[str, int]],
) -> None:
    """``ygg sim --host alpha`` serves alpha on its configured port (not beta); SIGTERM stops it."""
    path, ports = config
    cmd = [YGG, "--config", str(path), "sim", "--time-scale", "0.01", "--host", "alpha"]
    proc, banner = start(cmd)
    try:
        tags = httpx.get(f"http://127.0.0.1:{ports['alpha']}/api/tags").json()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{ports['beta']}/api/tags")
    finally:
        rc, rest = stop(proc, signal.SIGTERM)
    assert f"sim alpha: http://127.0.0.1:{ports['alpha']} ollama model=alpha:1b slots=2" in banner
    assert "time_scale=0.01" in banner and "beta" not in banner
    assert tags["models"][0]["name"] == "alpha:1b"
    assert (rc, rest.strip()) == (0, "sim: stopped")


def test_python_m_sim_serves_every_host_and_stops_on_ctrl_c(
    config: tuple[Path, dict[str, int]],
) -> None:
    """``python -m yggcelery.sim`` reads YGG_CONFIG, serves all hosts, and exits 0 on SIGINT."""
    path, ports = config
    env = {**os.environ, "YGG_CONFIG": str(path)}
    proc, banner = start([sys.executable, "-m", "yggcelery.sim"], env=env)
    try:
        versions = [
            httpx.get(f"http://127.0.0.1:{port}/api/version").status_code for port in ports.values()
        ]
    finally:
        rc, rest = stop(proc, signal.SIGINT)
    assert versions == [200, 200]
    assert banner.count("sim ") == 2
    assert rc == 0 and "sim: stopped" in rest


def test_ygg_sim_with_an_unknown_host_names_the_known_ones(
    config: tuple[Path, dict[str, int]],
) -> None:
    """An unknown ``--host`` is one error line listing the configured hosts, exit status 2."""
    path, _ = config
    done = subprocess.run(
        [YGG, "--config", str(path), "sim", "--host", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown host 'nope' (configured: alpha, beta)" in done.stderr
