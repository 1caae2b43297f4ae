"""The asyncio dispatcher against a real JSONL Beads file and the simulator (real HTTP)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from dispatch_helpers import add, records

from yggcelery.beads import JsonlStore
from yggcelery.bench.metrics import host_concurrency, served_requests, start_order
from yggcelery.dispatch.asyncio import AsyncDispatcher, PrioritySlots
from yggcelery.dispatch.choose import make_dispatcher
from yggcelery.outcomes import TASK_MARKER
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.waiting import wait_until


def test_priority_slots_let_the_most_urgent_waiter_in_first() -> None:
    """With one slot taken, waiters get it by priority, then in arrival order."""
    order: list[str] = []

    async def scenario() -> None:
        gate = PrioritySlots(1)

        async def worker(name: str, priority: int) -> None:
            async with gate.slot(priority):
                order.append(name)
                await asyncio.sleep(0)

        async with gate.slot(2):
            tasks = [
                asyncio.create_task(worker(n, p)) for n, p in (("a3", 3), ("b0", 0), ("c3", 3))
            ]
            await asyncio.sleep(0)
            assert gate.waiting_by_priority()["p3"] == 2
        await asyncio.gather(*tasks)
        assert gate.active == 0

    asyncio.run(scenario())
    assert order == ["b0", "a3", "c3"]


def test_every_issue_is_closed_once_with_one_result_comment(
    dispatch_world: tuple[SimFleet, Settings, JsonlStore],
) -> None:
    """All issues end closed, each with exactly one result comment, one model request each."""
    fleet, settings, store = dispatch_world
    ids = [add(store, kind, p % 5) for p, kind in enumerate(["code", "text", "reasoning"] * 4)]
    dispatcher = make_dispatcher("asyncio", settings, store)
    assert isinstance(dispatcher, AsyncDispatcher)
    dispatcher.run(until_idle=True)
    for issue in store.list_issues():
        assert issue.status == "closed", issue
        assert sum(TASK_MARKER in c.text for c in issue.comments) == 1
    assert sorted(r["bead"] for r in records(fleet)) == sorted(ids)


@pytest.mark.parametrize("queue_per_host", [0, 3])
def test_no_host_is_sent_more_requests_than_it_has_slots(
    dispatch_world: tuple[SimFleet, Settings, JsonlStore], queue_per_host: int
) -> None:
    """Every host runs exactly as many requests at once as it has slots, never more, with or
    without a local queue (8 beads per host keep its slots full)."""
    fleet, settings, store = dispatch_world
    ids = [add(store, kind, 2, service_s=50.0) for kind in ["code", "text", "reasoning"] * 8]
    AsyncDispatcher(settings, store, queue_per_host=queue_per_host).run(until_idle=True)
    served = served_requests(records(fleet), beads=dict.fromkeys(ids, 2))
    assert len(served) == len(ids)
    assert host_concurrency(served) == {"skadi-code": 2, "fenrir-chat": 3, "surtr-reasoning": 2}


def test_a_new_p0_takes_the_next_free_slot_before_the_backlog(
    dispatch_world: tuple[SimFleet, Settings, JsonlStore],
) -> None:
    """A p0 created after a p3 backlog was claimed is the next to start on its host."""
    fleet, settings, store = dispatch_world
    backlog = [add(store, "code", 3, service_s=100.0) for _ in range(6)]
    dispatcher = AsyncDispatcher(settings, store)
    assert dispatcher.poll() == 4  # two slots and a local queue of two; the rest stays in Beads
    assert sum(store.get(b).status == "open" for b in backlog) == 2
    urgent = add(store, "code", 0, service_s=5.0)
    assert dispatcher.poll() == 1  # the host is full: the p0 bumps a local p3 waiter
    assert store.get(urgent).status == "in_progress"
    assert dispatcher.poll() == 0  # writes back the bumped waiter: handed back, never started
    assert sum(store.get(b).status == "open" for b in backlog) == 3
    dispatcher.run(until_idle=True)
    served = served_requests(records(fleet), beads=dict.fromkeys([*backlog, urgent], 3))
    assert start_order(served)[2] == urgent
    assert all(store.get(b).status == "closed" for b in [*backlog, urgent])


def test_p0_is_started_first_from_a_mixed_queue(
    dispatch_world: tuple[SimFleet, Settings, JsonlStore],
) -> None:
    """Ready issues are taken most urgent first: the p0s start before the p4s."""
    fleet, settings, store = dispatch_world
    low = [add(store, "text", 4) for _ in range(4)]
    high = [add(store, "text", 0) for _ in range(3)]
    AsyncDispatcher(settings, store).run(until_idle=True)
    served = served_requests(records(fleet), beads=dict.fromkeys(low + high, 0))
    assert set(start_order(served)[:3]) == set(high)


def test_shutdown_awaits_running_work_and_hands_back_the_rest(
    dispatch_world: tuple[SimFleet, Settings, JsonlStore],
) -> None:
    """Running tasks finish and close; tasks waiting locally for a slot go back to ``open``."""
    _, settings, store = dispatch_world
    ids = [add(store, "code", 2, service_s=20.0) for _ in range(4)]
    dispatcher = AsyncDispatcher(settings, store, queue_per_host=2, drain_s=30.0)
    assert dispatcher.poll() == 4
    status = dispatcher.get_status()["skadi-code"]
    assert status["slots"] == 2
    assert status["queued"]["p2"] + status["active"] == 4
    dispatcher.shutdown(hand_back=True)
    statuses = sorted(store.get(b).status for b in ids)
    assert statuses == ["closed", "closed", "open", "open"]
    assert all(store.get(b).assignee in (None, "") for b in ids if store.get(b).status == "open")


def test_shutdown_hands_back_running_work_it_cannot_wait_for(
    dispatch_world: tuple[SimFleet, Settings, JsonlStore],
) -> None:
    """With no drain time, running tasks are cancelled and their issues reopened."""
    _, settings, store = dispatch_world
    ids = [add(store, "text", 1, service_s=300.0) for _ in range(2)]
    dispatcher = AsyncDispatcher(settings, store, drain_s=0.0)
    dispatcher.poll()
    dispatcher.shutdown(hand_back=True)
    assert [store.get(b).status for b in ids] == ["open", "open"]


def test_run_stops_when_the_stop_event_is_set(
    dispatch_world: tuple[SimFleet, Settings, JsonlStore],
) -> None:
    """``run(stop=...)`` from another thread ends the loop and hands back unfinished work."""
    _, settings, store = dispatch_world
    bead = add(store, "reasoning", 0, service_s=300.0)
    dispatcher = AsyncDispatcher(settings, store, drain_s=0.0)
    stop = threading.Event()
    runner = threading.Thread(target=dispatcher.run, kwargs={"stop": stop})
    runner.start()
    try:
        wait_until(lambda: store.get(bead).status == "in_progress", timeout_s=30,
                   what=f"{bead} claimed by the running dispatcher")  # fmt: skip
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert store.get(bead).status == "open"
