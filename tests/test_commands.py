"""The cluster commands as operators run them: `ygg worker`, `celery worker`, `ygg status`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import states

from yggcelery.beads import JsonlStore
from yggcelery.celery_app import make_app
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.ledger import Entry, EntryState, Ledger
from yggcelery.outcomes import BeadResult
from yggcelery.routing import CLOUD_QUEUE, task_id
from yggcelery.settings import Settings, to_env
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.waiting import wait_until


def pool_sizes(settings: Settings, *, timeout_s: float = 60) -> dict[str, int]:
    """Max concurrency per worker node, from `inspect stats` (what Flower shows)."""
    app = make_app(settings)
    inspect = app.control.inspect(timeout=1)  # each stats() call is a new broadcast
    stats: dict[str, Any] = wait_until(inspect.stats, timeout_s=timeout_s, what="a worker's stats")
    return {node.split("@")[0]: s["pool"]["max-concurrency"] for node, s in stats.items()}


def test_ygg_worker_runs_each_host_with_its_slots_and_node_name(
    make_settings: Callable[..., Settings], local_cluster: Callable[..., LocalCluster]
) -> None:
    """`ygg worker HOST` for the seed fleet: nodes surtr/fenrir/skadi@… with 2/3/2 processes."""
    settings = make_settings()
    local_cluster(settings, control=False)
    assert pool_sizes(settings) == {"surtr-reasoning": 2, "fenrir-chat": 3, "skadi-code": 2}


def test_plain_celery_worker_command_from_the_readme_works(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """`celery -A yggcelery worker -Q skadi-code -c 2 -n skadi-code@%h -E` consumes the queue."""
    settings = make_settings()
    env = {**os.environ, **to_env(settings)}
    cmd = [sys.executable, "-m", "celery", "-A", "yggcelery", "worker", "-Q", "skadi-code",
           "-c", "2", "-n", "skadi-code@%h", "-E", "--prefetch-multiplier", "1"]  # fmt: skip
    log = (tmp_path / "celery.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        assert pool_sizes(settings) == {"skadi-code": 2}
        queues = make_app(settings).control.inspect(timeout=2).active_queues() or {}
        assert [q["name"] for qs in queues.values() for q in qs] == ["skadi-code"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_ygg_status_json_reports_hosts_queues_and_ready_beads(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """`ygg status --json`: the seed's per-host keys, queued and ready by priority."""
    fleet = sim_fleet(time_scale=1.0)
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True)
    store = JsonlStore(settings.beads.jsonl_path)
    for n in range(3):
        store.create(f"code task {n}", priority=1, labels=["kind:code"], actor="me",
                     metadata={"ygg": {"service_s": 30}})  # fmt: skip
    store.create("summary", priority=0, labels=["kind:text"], actor="me")
    local_cluster(settings, hosts=["skadi-code"], control=False)
    CeleryDispatcher(settings, store).poll()  # 3 code tasks: 2 run on skadi's slots, 1 queued

    def busy_status() -> dict[str, Any]:
        """`ygg status --json` once skadi's two slots are busy ({} before that)."""
        out = subprocess.run([sys.executable, "-m", "yggcelery", "status", "--json"],
                             env={**os.environ, **to_env(settings)}, capture_output=True,
                             text=True, check=True)  # fmt: skip
        data: dict[str, Any] = json.loads(out.stdout)
        return data if data["hosts"]["skadi-code"]["active"] == 2 else {}

    data = wait_until(busy_status, timeout_s=30, every_s=0.5, what="skadi busy in `ygg status`")
    skadi = data["hosts"]["skadi-code"]
    assert skadi == {"slots": 2, "active": 2, "available_slots": 0, "online": True,
                     "queued": {"p0": 0, "p1": 1, "p2": 0, "p3": 0, "p4": 0}}  # fmt: skip
    assert data["hosts"]["fenrir-chat"]["online"] is False
    # the text issue went to fenrir's queue (its worker is not running), so nothing is ready
    assert data["hosts"]["fenrir-chat"]["queued"]["p0"] == 1
    assert sum(data["beads_ready"].values()) == 0


def test_dispatcher_sends_a_kind_whose_only_host_is_down_to_the_cloud_queue(
    make_settings: Callable[..., Settings], sim_fleet: Callable[..., SimFleet]
) -> None:
    """skadi down + cloud configured: a code issue goes to ygg-cloud; without cloud it waits."""
    fleet = sim_fleet(time_scale=1.0)
    fleet["skadi-code"].down()
    with_cloud = make_settings(fleet=fleet, cloud={"url": fleet["fenrir-chat"].url + "/v1"})
    with_cloud.beads.dir.mkdir(parents=True)
    store = JsonlStore(with_cloud.beads.jsonl_path)
    bead = store.create("fix it", labels=["kind:code"], actor="me")
    dispatcher = CeleryDispatcher(with_cloud, store)
    room = dispatcher.room()
    down = dispatcher.health.down_hosts()
    assert down == {"skadi-code"}
    assert dispatcher.route(bead, room=room, down=down) == (CLOUD_QUEUE, "code")
    without = CeleryDispatcher(make_settings(fleet=fleet), store)
    assert without.route(bead, room=without.room(), down=down) == (None, "code")


def test_a_full_host_still_takes_a_more_urgent_issue(
    make_settings: Callable[..., Settings], sim_fleet: Callable[..., SimFleet]
) -> None:
    """skadi holds its cap (2 x 2 slots) of p3 work; a new p0 is still sent, another p3 is not."""
    fleet = sim_fleet(time_scale=1.0)
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True)
    store = JsonlStore(settings.beads.jsonl_path)
    for n in range(6):
        store.create(f"refactor {n}", priority=3, labels=["kind:code"], actor="me")
    dispatcher = CeleryDispatcher(settings, store)
    assert dispatcher.poll() == 4
    assert dispatcher.poll() == 0
    urgent = store.create("prod is down", priority=0, labels=["kind:code"], actor="me")
    assert dispatcher.poll() == 1
    assert store.get(urgent.id).status == "in_progress"
    assert sorted(dispatcher.loads()["skadi-code"]) == [0, 3, 3, 3, 3]


def test_ygg_reconcile_once_closes_a_finished_issue(make_settings: Callable[..., Settings]) -> None:
    """`ygg reconcile --once` writes a stored result into Beads and prints what it did."""
    settings = make_settings()
    settings.beads.dir.mkdir(parents=True)
    store = JsonlStore(settings.beads.jsonl_path)
    bead = store.create("summarise the meeting", actor="me")
    store.claim(bead.id, actor="ygg")
    tid = task_id(bead.id, 1)
    Ledger.from_settings(settings).put(
        Entry(bead.id, 1, tid, "fenrir-chat", "text", 2, EntryState.SENT, time.time())
    )
    result = BeadResult(bead=bead.id, task_id=tid, kind="text", host="fenrir-chat", model="m",
                        text="Three decisions were made.", total_s=2.0)  # fmt: skip
    make_app(settings).backend.store_result(tid, result.to_dict(), states.SUCCESS)
    out = subprocess.run([sys.executable, "-m", "yggcelery", "reconcile", "--once"],
                         env={**os.environ, **to_env(settings)}, capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    assert json.loads(out.stdout) == {"close": 1}
    assert store.get(bead.id).status == "closed"
