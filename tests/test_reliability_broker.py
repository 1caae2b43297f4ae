"""Broker restart: Redis with AOF stopped for a few seconds mid-run and started on the same port.

Workers, beat and the dispatcher must reconnect by themselves; nothing lost, nothing duplicated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kombu.exceptions import OperationalError as OPERATIONAL

from yggcelery.beads import JsonlStore
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.ledger import EntryState, Ledger
from yggcelery.reconcile import broker_task_ids
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread, audit, requests_by_bead
from yggcelery.testing.redis import RedisServer
from yggcelery.testing.seed import seed_issues
from yggcelery.testing.waiting import wait_until

log = logging.getLogger(__name__)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, with the append-only file on (data and log in tmp_path)."""
    data = tmp_path / "redis"
    data.mkdir()
    with RedisServer(appendonly=True, data_dir=data) as server:
        yield server


def served(fleet: SimFleet) -> int:
    return sum(requests_by_bead(fleet).values())


def run_with_broker_restarts(
    settings: Settings, fleet: SimFleet, store: JsonlStore, redis: RedisServer,
    *, restarts: int, down_s: float, every: int,
) -> None:  # fmt: skip
    """Run the dispatcher; each time ``every`` more requests were served, restart Redis."""
    with DispatcherThread(CeleryDispatcher(settings, store)) as loop:
        for n in range(1, restarts + 1):
            wait_until(lambda n=n: served(fleet) >= n * every, timeout_s=120, every_s=0.2,
                       what=f"{n * every} beads served before restart {n}")  # fmt: skip
            log.warning("restarting redis (%d served)", served(fleet))
            redis.restart(down_s=down_s)
        assert loop.wait(timeout_s=240), "dispatcher did not finish"
        assert loop.error is None, loop.error


def broker_settings(
    make_settings: Callable[..., Settings], fleet: SimFleet, redis: RedisServer
) -> Settings:
    return make_settings(
        fleet=fleet,
        broker_url=redis.url(0),
        result_backend=redis.url(1),
        timeouts={"task_soft_s": 20, "task_hard_s": 25, "visibility_s": 30,
                  "lost_after_s": 40, "connect_s": 1, "read_s": 30},
    )  # fmt: skip


def test_redis_restart_mid_run_loses_and_duplicates_nothing(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    aof_redis: RedisServer,
    tmp_path: Path,
) -> None:
    """Redis down 5 s mid-run, then back on the same port and AOF: every issue closed once, the
    dispatcher, workers and beat carried on by themselves, and no model call ran twice (running
    calls finish through the outage and store their results once Redis is back)."""
    fleet = sim_fleet(time_scale=0.05)
    settings = broker_settings(make_settings, fleet, aof_redis)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    issues = seed_issues(store, count=30, dependency_every=0, service_s=10.0)
    cluster = local_cluster(settings, beat=True)

    run_with_broker_restarts(settings, fleet, store, aof_redis, restarts=1, down_s=5.0, every=8)

    report = audit(store)
    assert report.ok, report.problems
    assert report.statuses == {"closed": len(issues)}
    assert all(proc.poll() is None for proc in cluster.procs.values())  # nobody gave up
    repeated = {bead: n for bead, n in requests_by_bead(fleet).items() if n > 1}
    assert not repeated, f"model calls repeated across the broker restart: {repeated}"
    assert set(requests_by_bead(fleet)) == {i.id for i in issues}


def test_a_task_its_worker_revoked_on_connection_loss_is_requeued() -> None:
    """REVOKED in the backend while our entry is still SENT and the message is gone (Celery
    cancelling a running task on a broker outage): requeue; still in the broker: wait."""
    from celery import states

    from yggcelery.beads import Issue
    from yggcelery.ledger import Entry, EntryState
    from yggcelery.reconcile import Action, decide
    from yggcelery.routing import task_id
    from yggcelery.settings import load_settings

    settings = load_settings()
    now = time.time()
    entry = Entry("bd-1", 1, task_id("bd-1", 1), "skadi-code", "code", 2, EntryState.SENT, now)
    issue = Issue.model_validate(
        {"id": "bd-1", "title": "t", "status": "in_progress", "assignee": "ygg",
         "created_at": "2026-01-01T00:00:00Z"}
    )  # fmt: skip
    meta = {"status": states.REVOKED, "result": {"exc_type": "TaskRevokedError"}}
    gone = decide(entry, issue, meta, in_broker=False, now=now, settings=settings)
    assert gone.action is Action.REQUEUE and "broker connection lost" in gone.reason
    queued = decide(entry, issue, meta, in_broker=True, now=now, settings=settings)
    assert queued.action is Action.WAIT


def test_a_publish_that_fails_hands_its_beads_back_at_once(
    make_settings: Callable[..., Settings], sim_fleet: Callable[..., SimFleet]
) -> None:
    """The broker (a Redis of the test's own; the ledger stays on the result backend) is
    gone when the dispatcher publishes: the poll fails, and the beads it had claimed are open
    again at once, their attempts handed back (not counted as failures), instead of waiting
    as sent with no message. With the broker back, the next poll sends them as new attempts."""
    with RedisServer() as broker:
        settings = make_settings(fleet=sim_fleet(), broker_url=broker.url(0))
        settings.beads.dir.mkdir(parents=True, exist_ok=True)
        store = JsonlStore(settings.beads.jsonl_path)
        ids = [store.create(f"code {n}", issue_type="bug", actor="me").id for n in range(2)]
        dispatcher = CeleryDispatcher(settings, store)
        try:
            broker.stop()
            with pytest.raises(OPERATIONAL):
                dispatcher.poll()
            issues = {i.id: i for i in store.list_issues()}
            assert {issues[b].status for b in ids} == {"open"}
            assert all("publish failed" in (issues[b].notes or "") for b in ids)
            entries = {e.bead: e for e in Ledger.from_settings(settings).entries()}
            assert {(entries[b].state, entries[b].failures) for b in ids} == {
                (EntryState.REQUEUED, 0)
            }

            broker.start()
            assert dispatcher.poll() == 2
            entries = {e.bead: e for e in Ledger.from_settings(settings).entries()}
            assert {(entries[b].state, entries[b].attempt) for b in ids} == {(EntryState.SENT, 2)}
            assert broker_task_ids(dispatcher.app, settings) == {entries[b].task_id for b in ids}
        finally:
            dispatcher.shutdown(hand_back=False)
