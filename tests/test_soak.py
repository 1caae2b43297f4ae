"""Soak (``make soak``): 2,000 issues through the cluster while workers are killed and hosts fail.

Every issue must end closed with one result comment, or blocked with a reason; none lost, none
closed twice. The figures (kills, failures, recoveries, repeats) are printed as one JSON line and
recorded in RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from yggcelery.beads import JsonlStore
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import (
    DispatcherThread,
    audit,
    recovery_times,
    requests_by_bead,
    running_pids,
)
from yggcelery.testing.seed import seed_issues

ISSUES = 2_000


class Chaos:
    """Every few seconds: kill -9 a worker (restarted), kill -9 a pool process, or take a host
    down for a few seconds."""

    def __init__(self, cluster: LocalCluster, fleet: SimFleet, *, seed: int) -> None:
        self.cluster = cluster
        self.fleet = fleet
        self.rng = random.Random(seed)
        self.events: list[tuple[str, str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ygg-chaos", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.rng.uniform(4.0, 8.0)):
            action = self.rng.choice(["worker", "worker", "pool", "host"])
            host = self.rng.choice(list(self.fleet.hosts))
            if action == "worker":
                self.events.append(("worker", host, time.time()))
                self.cluster.kill_worker(host, sig=signal.SIGKILL)
                self.cluster.start_worker(host)
            elif action == "pool":
                pids = sorted(set(running_pids(self.cluster.app).values()))
                if pids:
                    self.events.append(("pool", host, time.time()))
                    os.kill(self.rng.choice(pids), signal.SIGKILL)
            else:
                self.events.append(("host", host, time.time()))
                self.fleet[host].down(for_s=self.rng.uniform(2.0, 5.0))

    def kills(self, kind: str) -> list[float]:
        return [at for what, _, at in self.events if what == kind]

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def soak_settings(make_settings: Callable[..., Settings], fleet: SimFleet) -> Settings:
    return make_settings(
        fleet=fleet,
        # The production timeouts: a killed worker's work comes back by its heartbeat lapsing
        # (worker_dead_s 15 s), not by the 20-minute visibility timeout.
        timeouts={"task_soft_s": 900, "task_hard_s": 960, "visibility_s": 1200,
                  "lost_after_s": 1500, "connect_s": 1, "read_s": 900},
        retry={"max_retries": 3, "backoff_s": 0.2, "backoff_max_s": 1.0, "max_deliveries": 5,
               "max_attempts": 3, "breaker_failures": 5, "breaker_cooldown_s": 2.0},
        dispatch={"poll_s": 0.2, "reconcile_every_s": 2.0, "status_every_s": 60,
                  "inflight_per_slot": 3},
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_soak_two_thousand_issues_with_kills_and_host_failures(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    tmp_path: Path,
) -> None:
    """2,000 issues, random worker kills, pool kills and host outages: each closed once or
    blocked with a reason, none lost."""
    fleet = sim_fleet(time_scale=0.02)
    settings = soak_settings(make_settings, fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    seed_issues(store, count=ISSUES, dependency_every=0, service_s=10.0)
    cluster = local_cluster(settings, beat=True)

    started = time.monotonic()
    with Chaos(cluster, fleet, seed=2026) as chaos:
        loop = DispatcherThread(CeleryDispatcher(settings, store)).start()
        assert loop.wait(timeout_s=3000), "dispatcher did not finish"
    elapsed_s = time.monotonic() - started
    assert loop.error is None

    report = audit(store)
    calls = requests_by_bead(fleet)
    recoveries = recovery_times(fleet, chaos.kills("worker"))
    pool_recoveries = recovery_times(fleet, chaos.kills("pool"))
    figures = {
        "issues": ISSUES, "elapsed_s": round(elapsed_s, 1), "statuses": dict(report.statuses),
        "problems": len(report.problems),
        "worker_kills": len(chaos.kills("worker")), "pool_kills": len(chaos.kills("pool")),
        "host_outages": len(chaos.kills("host")),
        "recovery_s_median": round(statistics.median(recoveries), 1) if recoveries else None,
        "recovery_s_max": round(max(recoveries), 1) if recoveries else None,
        "recoveries": len(recoveries),
        "pool_recovery_s_median": (
            round(statistics.median(pool_recoveries), 1) if pool_recoveries else None
        ),
        "pool_recoveries": len(pool_recoveries),
        "answered_twice": sum(1 for n in calls.values() if n > 1),
        "blocked_reasons": sorted({r.split(":")[0] for r in report.blocked.values()}),
    }  # fmt: skip
    (tmp_path / "soak.json").write_text(json.dumps(figures))
    print("SOAK", json.dumps(figures))
    assert report.ok, report.problems[:20]
    assert report.statuses["closed"] + report.statuses["blocked"] == ISSUES
