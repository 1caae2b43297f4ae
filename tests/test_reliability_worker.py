"""Worker crashes: kill -9 a whole worker (restarted each time) or one pool process mid-task.

Every issue must end closed exactly once (one result comment) and none be lost. The recovery
time (kill → the interrupted bead's next request at the simulator) follows the worker's
heartbeat for a dead worker (``timeouts.worker_dead_s``, 15 s, whatever the visibility timeout),
and is immediate for a dead pool process (``task_reject_on_worker_lost``).
"""

from __future__ import annotations

import functools
import logging
import os
import random
import signal
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
    running_pids,
    summary,
)
from yggcelery.testing.waiting import WaitTimeout, wait_until

log = logging.getLogger(__name__)
HOST = "skadi-code"
VISIBILITY_S = 10.0
#: kombu's default restore sweep (interval 10 s x throttle 10): what recovery would wait without
#: the cluster's settings.
KOMBU_DEFAULT_SWEEP_S = 100.0


def crash_settings(make_settings: Callable[..., Settings], fleet: SimFleet) -> Settings:
    return make_settings(
        fleet=fleet,
        timeouts={"task_soft_s": 7, "task_hard_s": 8, "visibility_s": VISIBILITY_S,
                  "lost_after_s": 120, "connect_s": 1, "read_s": 30},
        retry={"max_deliveries": 10, "backoff_s": 0.1, "backoff_max_s": 0.5},
    )  # fmt: skip


def code_issues(store: JsonlStore, count: int, *, service_s: float) -> list[str]:
    meta = {"ygg": {"service_s": service_s}}
    return [
        store.create(f"code task {n}", issue_type="bug", metadata=meta, actor="me").id
        for n in range(count)
    ]


def busy(fleet: SimFleet, host: str, *, since: float = 0.0) -> bool:
    """A model request that arrived after ``since`` is being served right now."""
    return any(
        r["started"] and r["finished"] is None and r["arrived"] > since
        for r in fleet[host].records()
    )


def interrupted(fleet: SimFleet, kill_at: float) -> list[str]:
    """Beads whose request was in flight at ``kill_at`` and got no answer."""
    return [
        r["bead"]
        for r in fleet[HOST].records()
        if r["status"] in (499, None) and r["arrived"] <= kill_at <= (r["finished"] or 1e18)
    ]


def answered_again(fleet: SimFleet, kill_at: float) -> bool:
    """Every bead the kill interrupted got an answer afterwards."""
    rows = fleet[HOST].records()
    return all(
        any(r["bead"] == bead and r["status"] == 200 and r["arrived"] > kill_at for r in rows)
        for bead in interrupted(fleet, kill_at)
    )


def next_arrivals(fleet: SimFleet, kill_at: float) -> list[tuple[float, float]]:
    """(arrival before the kill, next arrival after it) of each bead the kill interrupted."""
    rows = fleet[HOST].records()
    out = []
    for r in rows:
        if r["status"] in (499, None) and r["arrived"] <= kill_at <= (r["finished"] or 1e18):
            later = [
                x["arrived"] for x in rows if x["bead"] == r["bead"] and x["arrived"] > kill_at
            ]
            if later:
                out.append((r["arrived"], min(later)))
    return out


def diagnose(settings: Settings, dispatcher: object, beads: list[str]) -> str:
    """What the ledger, the backend and the broker know of ``beads`` (for a failure message)."""
    from yggcelery.reconcile import broker_task_ids, result_metas

    assert isinstance(dispatcher, CeleryDispatcher)
    entries = [dispatcher.ledger.get(b) for b in beads]
    ids = [e.task_id for e in entries if e]
    metas = {t: m.get("status") for t, m in result_metas(dispatcher.app, ids).items()}
    in_broker = broker_task_ids(dispatcher.app, settings) or set()
    return f"entries={entries} metas={metas} in_broker={[t for t in ids if t in in_broker]}"


def run_with_crashes(
    settings: Settings, fleet: SimFleet, cluster: LocalCluster, store: JsonlStore,
    *, kills: int, whole_worker: bool, seed: int = 1,
) -> list[float]:  # fmt: skip
    """Dispatch everything, kill -9 the worker (or a pool process) ``kills`` times while it is
    busy, restart it, wait for the interrupted work to come back; returns the kill times."""
    rng = random.Random(seed)
    killed_at: list[float] = []
    with DispatcherThread(CeleryDispatcher(settings, store)) as loop:
        while len(killed_at) < kills:
            since = killed_at[-1] if killed_at else 0.0
            at_work = functools.partial(busy, fleet, HOST, since=since)
            # the lambda runs in this iteration only, so its late binding of at_work is harmless
            wait_until(lambda: at_work() or not loop.alive, timeout_s=60, every_s=0.2,  # noqa: B023
                       what=f"{HOST} at work again")  # fmt: skip
            if not loop.alive:  # all work done before the next kill: fewer kills than asked
                break
            time.sleep(rng.uniform(0.1, 0.5))
            if whole_worker:
                killed_at.append(time.time())
                cluster.kill_worker(HOST, sig=signal.SIGKILL)
                cluster.start_worker(HOST)
            else:
                pids = sorted(set(running_pids(cluster.app).values()))
                if not pids:  # finished in between: try again
                    continue
                killed_at.append(time.time())
                os.kill(rng.choice(pids), signal.SIGKILL)
            if interrupted(fleet, killed_at[-1]):
                back = functools.partial(next_arrivals, fleet, killed_at[-1])
                try:
                    wait_until(back, timeout_s=KOMBU_DEFAULT_SWEEP_S, every_s=0.2,
                               what="the interrupted work back at a host")  # fmt: skip
                except WaitTimeout as exc:
                    lost = interrupted(fleet, killed_at[-1])
                    raise AssertionError(diagnose(settings, loop.dispatcher, lost)) from exc
                # Let the interrupted work finish before the next kill, or the kills would keep
                # hitting the same redelivered task (which then ends blocked, as a poison would).
                done = functools.partial(answered_again, fleet, killed_at[-1])
                wait_until(done, timeout_s=60, every_s=0.2, what="the interrupted work answered")
        assert loop.wait(timeout_s=240), "dispatcher did not finish"
        assert loop.error is None
    return killed_at


#: The production timeouts (the settings' defaults): a 16-minute hard limit, so the visibility
#: timeout is 20 minutes, and recovery must not wait for it.
PRODUCTION_VISIBILITY_S = 1200.0


def test_kill_9_whole_worker_at_production_timeouts_recovers_by_heartbeat(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """kill -9 of a worker running 10-minute tasks, three times, restarted, at the production
    visibility timeout (20 min): the interrupted beads run again once the worker's heartbeat
    lapses (seconds), never after the visibility timeout, and every issue is closed once."""
    fleet = sim_fleet(time_scale=0.02)  # a 600 s simulated task takes 12 s
    settings = make_settings(
        fleet=fleet,
        timeouts={"task_soft_s": 900, "task_hard_s": 960,
                  "visibility_s": PRODUCTION_VISIBILITY_S, "lost_after_s": 1500,
                  "connect_s": 1, "read_s": 900},
        retry={"max_deliveries": 10, "max_attempts": 5, "backoff_s": 0.1, "backoff_max_s": 0.5},
    )  # fmt: skip
    assert settings.timeouts.worker_dead_s == 15.0  # the default, as in production
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    ids = code_issues(store, 6, service_s=600.0)
    cluster = local_cluster(settings, hosts=[HOST])

    kills = run_with_crashes(settings, fleet, cluster, store, kills=3, whole_worker=True)

    report = audit(store)
    assert report.ok, report.problems
    assert report.statuses == {"closed": len(ids)}
    pairs = [p for k in kills for p in next_arrivals(fleet, k)]
    assert pairs, "no kill interrupted a model request"
    recoveries = recovery_times(fleet, kills)
    log.warning("worker kill -9 recovery at production timeouts: %s", summary(recoveries))
    assert max(recoveries) < PRODUCTION_VISIBILITY_S  # the heartbeat, not the visibility timeout


def test_kill_9_one_pool_process_redelivers_its_task_at_once(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """kill -9 of one pool process, three times: the task is rejected back to the queue and runs
    again before the visibility timeout; every issue closed once."""
    fleet = sim_fleet(time_scale=0.05)
    settings = crash_settings(make_settings, fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    ids = code_issues(store, 16, service_s=40.0)
    cluster = local_cluster(settings, hosts=[HOST])

    kills = run_with_crashes(settings, fleet, cluster, store, kills=3, whole_worker=False)

    report = audit(store)
    assert report.ok, report.problems
    assert report.statuses == {"closed": len(ids)}
    pairs = [p for k in kills for p in next_arrivals(fleet, k)]
    assert pairs, "no kill interrupted a model request"
    for before, after in pairs:
        assert after - before < VISIBILITY_S  # not waiting for the restore sweep
    log.warning("pool process kill -9 recovery: %s", summary(recovery_times(fleet, kills)))


@pytest.mark.slow
def test_kill_9_whole_worker_ten_times(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    tmp_path: Path,
) -> None:
    """Ten kill -9s of the worker under a 150-issue load: all closed once, none lost."""
    fleet = sim_fleet(time_scale=0.05)
    settings = crash_settings(make_settings, fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    ids = code_issues(store, 150, service_s=40.0)
    cluster = local_cluster(settings, hosts=[HOST])
    kills = run_with_crashes(settings, fleet, cluster, store, kills=10, whole_worker=True, seed=7)
    report = audit(store)
    assert report.ok, report.problems
    assert report.statuses == {"closed": len(ids)}
    recoveries = recovery_times(fleet, kills)
    (tmp_path / "recovery.txt").write_text(summary(recoveries))
    log.warning("worker kill -9 x10 recovery: %s", summary(recoveries))
    assert max(recoveries) < KOMBU_DEFAULT_SWEEP_S
