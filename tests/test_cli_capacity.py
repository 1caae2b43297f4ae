"""``ygg doctor`` and ``ygg tune`` as a user runs them: the real console script against a real
cluster (Redis, workers, beat) and the simulator's hosts, whose server parallelism can be set."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from yggcelery.beads import JsonlStore
from yggcelery.settings import Settings, to_env
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.waiting import wait_until

YGG = str(Path(os.sys.executable).with_name("ygg"))


def ygg(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **to_env(settings)}
    return subprocess.run(
        [YGG, *args], check=False, env=env, capture_output=True, text=True, timeout=120
    )


def beat_ran(settings: Settings) -> bool:
    return "ok   beat" in ygg(settings, "doctor", "--no-measure").stdout


def test_doctor_passes_on_a_healthy_cluster_and_names_a_host_whose_server_runs_fewer_slots(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """Every check passes on the running cluster (exit 0); with fenrir's server running one
    request at a time where ygg.toml says 3, doctor fails (exit 1) with a line naming the host,
    both numbers and the fix, and the other checks still run."""
    fleet = sim_fleet(time_scale=0.01)
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    JsonlStore(settings.beads.jsonl_path).create("a task", issue_type="task", actor="me")
    local_cluster(settings, beat=True)
    wait_until(lambda: beat_ran(settings), timeout_s=60, what="beat's first reconcile pass")

    healthy = ygg(settings, "doctor")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "FAIL" not in healthy.stdout

    fleet["fenrir-chat"].set_parallel(1)
    broken = ygg(settings, "doctor")
    assert broken.returncode == 1, broken.stdout
    failing = [line for line in broken.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1, broken.stdout
    assert "fenrir-chat" in failing[0] and "1" in failing[0] and "3" in failing[0]
    assert "slots" in failing[0]
    assert "ok   beads" in broken.stdout  # the checks after it still ran

    tuned = ygg(settings, "tune")
    assert tuned.returncode == 0, tuned.stderr
    assert "[hosts.fenrir-chat]\nslots = 1" in tuned.stdout
