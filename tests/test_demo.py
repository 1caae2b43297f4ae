"""`ygg demo` as a new user runs it: a subprocess, on a fresh directory, twice in a row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil

HOSTS = ("surtr-reasoning", "fenrir-chat", "skadi-code")
#: An environment variable every process the demo starts inherits: how its children are found.
TAG = "YGG_DEMO_TEST_TAG_FOR_LEAKS"


def role(proc: psutil.Process) -> str:
    """What a demo child is, from its command line."""
    cmd = " ".join(proc.cmdline())
    for word in ("redis-server", "flower", "beat", "loop", "worker"):
        if word in cmd:
            return word
    return cmd[:60]


Seen = dict[tuple[int, float], str]


def children(tag: str, *, demo: int) -> Seen:
    """Live processes of one demo run, (pid, start time) -> role: those that inherited its tag,
    and its direct children (redis-server rewrites its environment, so the tag cannot be read)."""
    found: Seen = {}
    for proc in psutil.process_iter():
        try:
            if proc.pid == demo or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.ppid() == demo or proc.environ().get(TAG) == tag:
                found[proc.pid, proc.create_time()] = role(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def still_running(seen: Seen) -> list[tuple[int, str]]:
    alive = []
    for (pid, created), name in seen.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append((pid, name))
        except psutil.NoSuchProcess:
            continue
    return alive


def run_demo(cwd: Path) -> tuple[int, str, Seen, list[tuple[int, str]]]:
    """(exit status, output, children seen while it ran, children still running after)."""
    tag = uuid.uuid4().hex
    env = {**os.environ, TAG: tag}
    args = [sys.executable, "-m", "yggcelery", "demo", "--time-scale", "0.05"]
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(proc.stdout or []), daemon=True)
    reader.start()
    seen: Seen = {}
    while proc.poll() is None:
        # A process read while it exits has an empty command line: keep the role seen before.
        seen |= {key: name for key, name in children(tag, demo=proc.pid).items()
                 if name or key not in seen}  # fmt: skip
        time.sleep(0.5)
    reader.join(timeout=30)
    late = [(pid, name) for (pid, _), name in children(tag, demo=proc.pid).items()]
    left = sorted(set(still_running(seen)) | set(late))
    return proc.returncode, "".join(chunks), seen, left


def read_issues(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def result_comments(issue: dict[str, object]) -> int:
    comments = issue.get("comments") or []
    assert isinstance(comments, list)
    return sum(1 for c in comments if "ygg-task:" in c["text"])


def test_demo_closes_every_issue_once_summarises_each_host_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    """Two runs: exit 0, 30 issues closed with one result comment each, hosts in the summary,
    `ygg doctor` passing every check on the running cluster, Redis, workers, beat, Flower and
    the dispatcher all seen running, and none left after."""
    beads_file = tmp_path / ".ygg" / "demo" / ".beads" / "issues.jsonl"
    for run in (1, 2):
        code, output, seen, left = run_demo(tmp_path)
        assert code == 0, f"run {run}:\n{output}"
        issues = read_issues(beads_file)
        assert len(issues) == 30, f"run {run}: the workspace is recreated, not appended to"
        assert {i["status"] for i in issues} == {"closed"}
        assert [result_comments(i) for i in issues] == [1] * 30
        summary = output[output.index("Summary per host") :]
        for host in HOSTS:
            assert host in summary, f"run {run}: {host} missing from the summary:\n{output}"
        assert "30 of 30 issues closed" in output
        assert "ygg doctor on this cluster: all " in output and "checks pass" in output, output
        assert f"--beads-file {beads_file}" in output
        assert "password" in output and "http://127.0.0.1:" in output
        assert {"redis-server", "worker", "beat", "flower", "loop"} <= set(seen.values()), seen
        assert left == [], f"run {run} left {left} running"
