"""Every expected failure of a ``ygg`` command is one ``ygg: error:`` line and exit status 2.

Each case runs the installed ``ygg`` console script as an operator would, with ``YGG_*``
settings in its environment: the broker and result backend on a port where nothing listens, a
port taken by a socket this test holds, an unknown host, an unreadable Beads file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from yggcelery.beads import JsonlStore
from yggcelery.cli.errors import EXIT_ERROR
from yggcelery.testing.redis import RedisServer, free_port

YGG = Path(sys.executable).with_name("ygg")


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("ygg: error:")]


def ygg(*args: str, env: dict[str, str], cwd: Path) -> Ran:
    """``ygg ARGS`` in ``cwd`` with ``env`` added to the environment (no YGG_* of the caller)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("YGG_")}
    proc = subprocess.run([str(YGG), *args], env={**base, **env}, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line(ran: Ran, *fragments: str) -> str:
    """Exit 2, no traceback, and exactly one ``ygg: error:`` line, the last one, naming
    ``fragments``; returns that line."""
    assert "Traceback" not in ran.stderr + ran.stdout, ran.stderr[-3000:]
    assert ran.code == EXIT_ERROR, (ran.code, ran.stderr[-3000:])
    assert len(ran.error_lines) == 1, ran.stderr[-3000:]
    (line,) = ran.error_lines
    assert ran.stderr.splitlines()[-1] == line
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.fixture
def redis_down() -> dict[str, str]:
    """Settings whose broker and result backend are on a port where nothing listens."""
    port = free_port()
    return {
        "YGG_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "YGG_RESULT_BACKEND": f"redis://127.0.0.1:{port}/1",
        "YGG_METRICS_PORT": "0",
    }


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port this test holds open (listening), so nobody else can bind it."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


@pytest.mark.parametrize(
    "args",
    [("status",), ("status", "--json"), ("reconcile", "--once"), ("loop",),
     ("worker", "skadi-code"), ("worker", "control"), ("beat",), ("flower",)],
    ids=" ".join,
)  # fmt: skip
def test_a_command_that_needs_the_broker_says_in_one_line_that_it_is_unreachable(
    args: tuple[str, ...], redis_down: dict[str, str], tmp_path: Path
) -> None:
    """Redis down: the command names the broker and backend URLs and the settings to fix."""
    broker = redis_down["YGG_BROKER_URL"]
    line = assert_one_line(ygg(*args, env=redis_down, cwd=tmp_path), "cannot reach the broker")
    assert broker in line and "YGG_BROKER_URL" in line


def test_flower_on_a_taken_port_names_the_port(
    redis_db: RedisServer, taken_port: int, tmp_path: Path
) -> None:
    """`ygg flower` on a port in use: one line naming the address and the setting to change."""
    env = {"YGG_BROKER_URL": redis_db.url(0), "YGG_RESULT_BACKEND": redis_db.url(1)}
    ran = ygg("flower", "--port", str(taken_port), env=env, cwd=tmp_path)
    assert_one_line(ran, f"flower: cannot listen on 127.0.0.1:{taken_port}", "flower.port")


@pytest.mark.parametrize("mode", ["--legacy", "--async", "--celery"])
def test_loop_on_a_taken_metrics_port_names_the_port_before_any_work(
    mode: str,
    request: pytest.FixtureRequest,
    redis_down: dict[str, str],
    taken_port: int,
    tmp_path: Path,
) -> None:
    """`ygg loop` whose metrics port is in use: one line naming it, and the ready issue is
    left alone (the Celery loop gets a Redis that answers, so its broker check passes)."""
    env = {**redis_down, "YGG_METRICS_PORT": str(taken_port)}
    if mode == "--celery":
        redis_db: RedisServer = request.getfixturevalue("redis_db")
        env |= {"YGG_BROKER_URL": redis_db.url(0), "YGG_RESULT_BACKEND": redis_db.url(1)}
    store = JsonlStore(tmp_path / ".beads" / "issues.jsonl")
    issue = store.create("summarise", actor="me")
    ran = ygg("loop", mode, "--until-idle", env=env, cwd=tmp_path)
    assert_one_line(ran, f"metrics: cannot listen on 127.0.0.1:{taken_port}", "metrics_port")
    assert store.get(issue.id).status == "open"


def test_worker_for_an_unknown_host_lists_the_configured_ones(
    redis_down: dict[str, str], tmp_path: Path
) -> None:
    """`ygg worker nope`: one line naming the unknown host and the configured ones."""
    ran = ygg("worker", "nope", env=redis_down, cwd=tmp_path)
    assert_one_line(ran, "unknown host 'nope'", "skadi-code")


@pytest.mark.parametrize(
    "args", [("beads", "ready"), ("loop", "--legacy", "--until-idle")], ids=" ".join
)
def test_an_unreadable_beads_file_is_named(
    args: tuple[str, ...], redis_down: dict[str, str], tmp_path: Path
) -> None:
    """The Beads file is a directory: one line naming the file and the problem."""
    (tmp_path / ".beads" / "issues.jsonl").mkdir(parents=True)
    ran = ygg(*args, env=redis_down, cwd=tmp_path)
    assert_one_line(ran, ".beads/issues.jsonl: Is a directory")


def test_a_missing_bd_binary_is_named(redis_down: dict[str, str], tmp_path: Path) -> None:
    """Beads through bd, whose binary is not there: one line naming the command that failed."""
    env = {**redis_down, "YGG_BEADS__STORE": "bd", "YGG_BEADS__BD_BINARY": "/nonexistent/bd"}
    ran = ygg("beads", "ready", env=env, cwd=tmp_path)
    assert_one_line(ran, "bd ready failed", "/nonexistent/bd")


def test_a_missing_settings_file_is_named(redis_down: dict[str, str], tmp_path: Path) -> None:
    """`ygg --config missing.toml status`: one line naming the file."""
    ran = ygg("--config", "missing.toml", "status", env=redis_down, cwd=tmp_path)
    assert_one_line(ran, "missing.toml")
