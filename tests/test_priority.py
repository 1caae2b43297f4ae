"""Broker priorities end to end: real Redis (or RabbitMQ), real `ygg worker`s, the simulator.

Tasks are published straight to a host's queue (as the dispatcher does, ledger entry included)
so these tests pin down the Celery/kombu configuration itself; the order work *started in* is read
from the simulator's records, where each request carries its bead id and priority.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from yggcelery.celery_app import make_app
from yggcelery.ledger import Entry, EntryState, Ledger
from yggcelery.routing import broker_priority, task_id
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.waiting import wait_until
from yggcelery.work.perform import WorkOrder

HOST = "skadi-code"


def publish(
    settings: Settings, ledger: Ledger | None, bead: str, priority: int, service_s: float
) -> None:
    """Send one run_bead for ``bead`` at ``priority`` to HOST, as the dispatcher would."""
    app = make_app(settings)
    tid = task_id(bead, 1)
    if ledger is not None:
        ledger.put(Entry(bead, 1, tid, HOST, "code", priority, EntryState.SENT, time.time()))
    order = WorkOrder(
        bead={"id": bead, "title": f"task {bead}"}, kind="code", host=HOST,
        priority=priority, attempt=1, task_id=tid, service_s=service_s,
    )  # fmt: skip
    app.send_task(
        "yggcelery.run_bead", args=[order.to_dict()], task_id=tid, queue=HOST,
        routing_key=HOST, priority=broker_priority(priority, settings.broker_kind),
    )  # fmt: skip


def wait_served(fleet: SimFleet, count: int, *, timeout_s: float = 120) -> list[dict[str, Any]]:
    """The host's answered requests in start order, once there are ``count`` of them."""

    def served() -> list[dict[str, Any]]:
        records = [r for r in fleet[HOST].records() if r["status"] == 200]
        return records if len(records) >= count else []

    records = wait_until(served, timeout_s=timeout_s, every_s=0.1,
                         what=f"{count} requests served by {HOST}")  # fmt: skip
    return sorted(records, key=lambda r: r["started"])


def inversions(records: list[dict[str, Any]]) -> int:
    """Pairs started out of (priority, then FIFO within a priority) order."""
    keys = [(r["priority"], int(r["bead"].split("-")[1])) for r in records]
    return sum(1 for i, a in enumerate(keys) for b in keys[i + 1 :] if b < a)


def single_host(
    make_settings: Callable[..., Settings], fleet: SimFleet, slots: int, **kw: Any
) -> Settings:
    host = fleet.host_overrides()[HOST].model_copy(update={"slots": slots})
    return make_settings(hosts={HOST: host}, routing={"default_kind": "code"}, **kw)


def run_priority_order(
    settings: Settings, fleet: SimFleet, cluster: Callable[..., LocalCluster]
) -> None:
    ledger = Ledger.from_settings(settings)
    rng = random.Random(7)
    priorities = [rng.randrange(5) for _ in range(40)]
    for n, priority in enumerate(priorities):
        publish(settings, ledger, f"t-{n:02d}", priority, service_s=0.02)
    cluster(settings, control=False)
    records = wait_served(fleet, 40)
    assert [r["priority"] for r in records] == sorted(priorities)
    assert inversions(records) == 0


def test_forty_queued_tasks_run_in_priority_order_fifo_within_a_level(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """40 mixed-priority tasks queued before a concurrency-1 worker starts: zero inversions."""
    fleet = sim_fleet(time_scale=1.0)
    settings = single_host(make_settings, fleet, slots=1)
    run_priority_order(settings, fleet, local_cluster)


def test_p0_behind_twenty_p3_starts_at_the_next_free_slot(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """A p0 sent behind 20 queued p3 on a 2-slot host takes the next slot; no p3 overtakes it.

    The two running tasks end at different times, so exactly one slot frees first: the task
    that starts there must be the p0, and it must start before every queued p3.
    """
    fleet = sim_fleet(time_scale=1.0)
    settings = single_host(make_settings, fleet, slots=2)
    ledger = Ledger.from_settings(settings)
    local_cluster(settings, control=False)
    publish(settings, ledger, "t-01", 3, service_s=1.5)
    publish(settings, ledger, "t-02", 3, service_s=4.0)
    wait_served_or_running(fleet, 2)
    for n in range(3, 21):
        publish(settings, ledger, f"t-{n:02d}", 3, service_s=0.5)
    sent_at = time.time()
    publish(settings, ledger, "t-00", 0, service_s=0.5)
    wait_served(fleet, 4)
    started = sorted((r for r in fleet[HOST].records() if r["started"]), key=lambda r: r["started"])
    after = [r for r in started if r["started"] > sent_at]
    assert after[0]["priority"] == 0, f"{after[0]['bead']} took the first free slot"
    # Only the two that were running when the p0 was sent started before it (in either order:
    # they were delivered together to two pool processes).
    assert sorted(r["bead"] for r in started if r["started"] < after[0]["started"]) == [
        "t-01", "t-02"
    ]  # fmt: skip


def wait_served_or_running(fleet: SimFleet, count: int, *, timeout_s: float = 60) -> None:
    wait_until(lambda: len([r for r in fleet[HOST].records() if r["started"]]) >= count,
               timeout_s=timeout_s, what=f"{count} requests started at {HOST}")  # fmt: skip


def rabbitmq_running() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.rabbitmq
@pytest.mark.skipif(not rabbitmq_running(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_priority_order_holds_on_rabbitmq(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """Same 40-task test on RabbitMQ: x-max-priority queues, inverted priorities."""
    import kombu

    fleet = sim_fleet(time_scale=1.0)
    vhost_queue = HOST
    settings = single_host(
        make_settings, fleet, slots=1, broker_url="amqp://guest:guest@127.0.0.1:5672//"
    )
    with kombu.Connection(settings.broker_url) as conn:  # start from an empty queue
        conn.default_channel.queue_delete(vhost_queue)
    run_priority_order(settings, fleet, local_cluster)
