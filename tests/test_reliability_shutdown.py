"""Shutdown: SIGTERM on a worker finishes its running tasks; SIGINT on `ygg loop` leaves no
issue claimed but never sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from yggcelery.beads import JsonlStore
from yggcelery.celery_app import make_app
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.ledger import EntryState, Ledger
from yggcelery.reconcile import broker_task_ids, result_metas
from yggcelery.settings import Settings, to_env
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread, audit, requests_by_bead
from yggcelery.testing.seed import seed_issues
from yggcelery.testing.waiting import wait_until

HOST = "skadi-code"


def code_issues(store: JsonlStore, count: int, service_s: float) -> list[str]:
    meta = {"ygg": {"service_s": service_s}}
    return [
        store.create(f"code {n}", issue_type="bug", metadata=meta, actor="me").id
        for n in range(count)
    ]


def test_sigterm_on_a_worker_finishes_its_running_tasks(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """Warm shutdown: requests in flight at SIGTERM are answered (none cut off); after a restart
    every issue is closed once and no bead reached the model twice."""
    fleet = sim_fleet(time_scale=0.05)
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    ids = code_issues(store, 8, service_s=40.0)
    cluster = local_cluster(settings, hosts=[HOST])

    with DispatcherThread(CeleryDispatcher(settings, store)) as loop:
        wait_until(lambda: any(r["status"] is None for r in fleet[HOST].records()),
                   timeout_s=60, every_s=0.2, what=f"a request running at {HOST}")  # fmt: skip
        termed_at = time.time()
        os.kill(cluster.pid(HOST), signal.SIGTERM)  # the main process only (systemd KillMode=mixed)
        cluster.procs[HOST].wait(timeout=120)
        cluster.start_worker(HOST)
        assert loop.wait(timeout_s=180), "dispatcher did not finish"

    running = [r for r in fleet[HOST].records() if r["arrived"] <= termed_at]
    assert running and all(r["status"] == 200 for r in running), running
    report = audit(store)
    assert report.ok and report.statuses == {"closed": len(ids)}, report.problems
    assert set(requests_by_bead(fleet, status=None).values()) == {1}


def test_sigterm_on_the_whole_worker_group_hands_running_tasks_back(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """SIGTERM to the worker and its pool at once (KillMode=control-group): the cut-off tasks go
    back to the queue and run again after a restart; every issue closed once."""
    fleet = sim_fleet(time_scale=0.05)
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    ids = code_issues(store, 8, service_s=40.0)
    cluster = local_cluster(settings, hosts=[HOST])

    with DispatcherThread(CeleryDispatcher(settings, store)) as loop:
        wait_until(lambda: any(r["status"] is None for r in fleet[HOST].records()),
                   timeout_s=60, every_s=0.2, what=f"a request running at {HOST}")  # fmt: skip
        cluster.kill_worker(HOST, sig=signal.SIGTERM)
        cluster.start_worker(HOST)
        assert loop.wait(timeout_s=180), "dispatcher did not finish"

    report = audit(store)
    assert report.ok and report.statuses == {"closed": len(ids)}, report.problems


def test_sigint_on_ygg_loop_leaves_nothing_claimed_but_unsent(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    tmp_path: Path,
) -> None:
    """After Ctrl+C, each in_progress issue has a SENT entry whose task is queued, running or
    finished; the rest is open. A second `ygg loop` then finishes everything once."""
    fleet = sim_fleet(time_scale=0.05)
    settings = make_settings(fleet=fleet, metrics_port=0)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    issues = seed_issues(store, count=30, dependency_every=0, service_s=30.0)
    cluster = local_cluster(settings)
    env = {**to_env(settings), "PATH": "/usr/bin:/bin"}
    log = (tmp_path / "loop.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "yggcelery", "loop"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=tmp_path)  # fmt: skip
    wait_until(lambda: sum(requests_by_bead(fleet, status=None).values()) >= 4, timeout_s=60,
               every_s=0.2, what="4 model requests sent by `ygg loop`")  # fmt: skip
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0

    app, ledger = make_app(settings), Ledger.from_settings(settings)
    entries = {e.bead: e for e in ledger.entries()}
    in_broker = broker_task_ids(app, settings) or set()
    metas = result_metas(app, [e.task_id for e in entries.values()])
    held = [i for i in store.list_issues() if i.status == "in_progress"]
    assert held  # something was running when the loop stopped
    for issue in held:
        entry = entries[issue.id]
        assert entry.state is EntryState.SENT, entry
        assert entry.task_id in in_broker or entry.task_id in metas, entry
    assert {i.status for i in store.list_issues()} <= {"open", "in_progress", "closed"}
    assert [e for e in entries.values() if e.state is EntryState.CLAIMED] == []

    loop = DispatcherThread(CeleryDispatcher(settings, store)).start()
    assert loop.wait(timeout_s=180)
    report = audit(store)
    assert report.ok and report.statuses == {"closed": len(issues)}, report.problems
    assert set(requests_by_bead(fleet, status=None).values()) == {1}
    assert cluster.procs
