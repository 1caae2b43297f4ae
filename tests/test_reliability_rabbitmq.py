"""RabbitMQ restart: a cluster on an ``amqp://`` broker (result backend and ledger on Redis),
RabbitMQ stopped cleanly and started again mid-run on the same node, ports and data.

The node is the test's own (:class:`~yggcelery.testing.rabbitmq.RabbitServer`); the test is
skipped, saying why, where ``rabbitmq-server`` is not installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest

from yggcelery.beads import JsonlStore
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.settings import Settings, TimeoutSettings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread, audit, records, requests_by_bead
from yggcelery.testing.rabbitmq import RabbitServer, rabbitmq_missing
from yggcelery.testing.waiting import wait_until

log = logging.getLogger(__name__)
HOST = "skadi-code"


@pytest.fixture
def rabbit() -> Iterator[RabbitServer]:
    """A RabbitMQ node of this test's own (skipped where the package is not installed)."""
    missing = rabbitmq_missing()
    if missing:
        pytest.skip(missing)
    with RabbitServer() as server:
        yield server


def test_rabbitmq_restart_mid_run_loses_and_duplicates_nothing(
    rabbit: RabbitServer,
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """RabbitMQ restarted while beads run and wait in its queue: the workers and the
    dispatcher reconnect by themselves, queued messages survive (durable queues, persistent
    messages), every issue is closed once and no model call runs twice (a running task's
    message, requeued by RabbitMQ when the connection drops, is skipped as a duplicate). At
    the production timeouts: a publish RabbitMQ did not confirm hands its bead back at once,
    so nothing waits for `lost_after_s` (25 minutes)."""
    fleet = sim_fleet(time_scale=0.05)
    settings = make_settings(
        fleet=fleet, broker_url=rabbit.url(),
        timeouts={**TimeoutSettings().model_dump(), "connect_s": 1, "read_s": 30},
    )  # fmt: skip
    assert settings.timeouts.lost_after_s == 1500  # production: nothing may wait for it
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    meta = {"ygg": {"service_s": 40.0}}  # 2 s each on 2 slots, 2 more queued
    ids = [store.create(f"code {n}", issue_type="bug", metadata=meta, actor="me").id
           for n in range(8)]  # fmt: skip
    local_cluster(settings, hosts=[HOST])

    with DispatcherThread(CeleryDispatcher(settings, store)) as loop:
        wait_until(lambda: len(requests_by_bead(fleet)) >= 2, timeout_s=60,
                   what="two beads answered before the restart")  # fmt: skip
        down_at = time.time()
        rabbit.restart()
        up_at = time.time()
        assert loop.wait(timeout_s=120), "dispatcher did not finish"
        assert loop.error is None, loop.error

    report = audit(store)
    assert report.ok, report.problems
    assert report.statuses == {"closed": len(ids)}
    asked = requests_by_bead(fleet, status=None)
    assert set(asked) == set(ids)
    repeated = {bead: n for bead, n in asked.items() if n > 1}
    assert not repeated, f"model calls repeated across the restart: {repeated}"
    next_request = min(r["arrived"] for r in records(fleet) if r["arrived"] > up_at)
    handed_back = [i.id for i in store.list_issues() if "publish failed" in (i.notes or "")]
    log.warning("rabbitmq restart: down %.1fs; back → next model request %.1fs; %d bead(s) "
                "whose publish failed in the outage handed back at once", up_at - down_at,
                next_request - up_at, len(handed_back))  # fmt: skip
