"""The simulated GPU (slot pool) and the service-time model, without HTTP."""

from __future__ import annotations

import asyncio

import pytest

from yggcelery.settings import load_settings
from yggcelery.sim.config import SimHostConfig
from yggcelery.sim.gpu import QueueFull, SlotPool


class FakeClock:
    """A clock the test moves by hand, so utilisation figures are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waiters_get_slots_in_arrival_order() -> None:
    """With every slot busy, freed slots go to waiting requests first come, first served."""

    async def scenario() -> list[str]:
        pool = SlotPool(slots=1, max_queue=10, time_scale=1.0)
        first = await pool.acquire()
        order: list[str] = []

        async def waiter(name: str) -> None:
            slot = await pool.acquire()
            order.append(name)
            pool.release(slot, service_s=0.0)

        tasks = [asyncio.create_task(waiter(n)) for n in "abcde"]
        await asyncio.sleep(0)
        assert pool.queued == 5
        pool.release(first, service_s=0.0)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == list("abcde")


def test_a_request_past_max_queue_is_refused() -> None:
    """Slots busy and max_queue waiting: the next acquire raises QueueFull and is counted."""

    async def scenario() -> SlotPool:
        pool = SlotPool(slots=2, max_queue=1, time_scale=1.0)
        await pool.acquire()
        await pool.acquire()
        queued = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await pool.acquire()
        queued.cancel()
        return pool

    pool = asyncio.run(scenario())
    assert (pool.busy, pool.rejected, pool.max_concurrency) == (2, 1, 2)


def test_a_cancelled_waiter_leaves_the_queue() -> None:
    """A waiter whose client went away no longer counts, and does not take a slot."""

    async def scenario() -> tuple[int, int]:
        pool = SlotPool(slots=1, max_queue=1, time_scale=1.0)
        slot = await pool.acquire()
        gone = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        queued_after_cancel = pool.queued
        pool.release(slot, service_s=1.0)
        return queued_after_cancel, pool.busy

    assert asyncio.run(scenario()) == (0, 0)


def test_lowest_free_slot_is_reused() -> None:
    """Freed slots are handed out lowest index first, so a timeline uses few rows."""

    async def scenario() -> int:
        pool = SlotPool(slots=3, max_queue=0, time_scale=1.0)
        slots = [await pool.acquire() for _ in range(3)]
        assert slots == [0, 1, 2]
        pool.release(2, service_s=1.0)
        pool.release(0, service_s=1.0)
        return await pool.acquire()

    assert asyncio.run(scenario()) == 0


def test_utilisation_is_busy_over_available_slot_seconds_in_simulated_time() -> None:
    """Two 10 s services on a 2-slot host over 20 simulated seconds give 50 % utilisation."""
    clock = FakeClock()
    pool = SlotPool(slots=2, max_queue=4, time_scale=0.01, clock=clock)

    async def serve_two() -> None:
        first, second = await pool.acquire(), await pool.acquire()
        clock.now += 0.1  # 10 simulated seconds
        pool.release(first, service_s=10.0)
        pool.release(second, service_s=10.0)

    asyncio.run(serve_two())
    clock.now += 0.1
    assert pool.busy_slot_s() == pytest.approx(20.0)
    assert pool.elapsed_s() == pytest.approx(20.0)
    assert pool.utilisation() == pytest.approx(0.5)
    assert pool.served == 2
    pool.reset()
    assert (pool.served, pool.busy_slot_s(), pool.max_concurrency) == (0, 0.0, 0)


def test_service_time_is_base_of_kind_plus_tokens() -> None:
    """Service = base_s[kind] + per_token_s x tokens, with the request's limit or the default."""
    config = SimHostConfig(
        name="h",
        model="m",
        kind="text",
        base_s={"text": 2.0, "code": 4.0},
        default_base_s=1.0,
        per_token_s=0.02,
        default_output_tokens=200,
    )
    assert config.service_s(kind=None, output_tokens=None) == pytest.approx(6.0)
    assert config.service_s(kind="code", output_tokens=100) == pytest.approx(6.0)
    assert config.service_s(kind="unknown", output_tokens=50) == pytest.approx(2.0)
    assert config.service_s(kind="text", output_tokens=-1) == pytest.approx(6.0)


def test_config_from_settings_takes_the_host_and_sim_sections() -> None:
    """A host's model, slots, port and first kind, and the sim section's times, make its config."""
    settings = load_settings(sim={"time_scale": 0.5, "max_queue": 3, "per_token_s": 0.1})
    config = SimHostConfig.from_settings("skadi-code", settings.hosts["skadi-code"], settings.sim)
    assert (config.model, config.slots, config.kind) == ("qwen2.5-coder:7b", 2, "code")
    assert (config.port, config.time_scale, config.max_queue) == (11437, 0.5, 3)
    assert config.per_token_s == 0.1
    assert config.base_for("code") == settings.sim.base_s["code"]


def test_config_rejects_zero_slots() -> None:
    """A host with no slot cannot serve anything: refused at construction."""
    with pytest.raises(ValueError, match="slots"):
        SimHostConfig(name="h", model="m", slots=0)


def test_growing_the_pool_hands_new_slots_to_waiters_at_once() -> None:
    """1 slot busy, 2 waiting; resize(3): both waiters get a slot without any release."""

    async def scenario() -> tuple[list[int], int]:
        pool = SlotPool(slots=1, max_queue=10, time_scale=1.0)
        await pool.acquire()
        waiters = [asyncio.create_task(pool.acquire()) for _ in range(2)]
        await asyncio.sleep(0)
        pool.resize(3)
        slots = list(await asyncio.gather(*waiters))
        return slots, pool.busy

    assert asyncio.run(scenario()) == ([1, 2], 3)


def test_shrinking_the_pool_lets_busy_slots_finish_and_then_serves_fewer() -> None:
    """3 busy, resize(1): nothing is cut off; a waiter gets a slot only when 1 or fewer are busy."""

    async def scenario() -> list[tuple[int, bool]]:
        pool = SlotPool(slots=3, max_queue=10, time_scale=1.0)
        held = [await pool.acquire() for _ in range(3)]
        waiter = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0)
        pool.resize(1)
        seen = [(pool.busy, waiter.done())]
        for slot in (held[2], held[0]):
            pool.release(slot, service_s=0.0)
            await asyncio.sleep(0)
            seen.append((pool.busy, waiter.done()))
        pool.release(held[1], service_s=0.0)
        await asyncio.sleep(0)
        seen.append((pool.busy, waiter.done()))
        assert pool.busy_slots() == [await waiter] == [0]
        return seen

    assert asyncio.run(scenario()) == [(3, False), (2, False), (1, False), (1, True)]


def test_a_pool_cannot_have_no_slots() -> None:
    """resize(0) is refused: a server decodes at least one request at a time."""
    with pytest.raises(ValueError, match="slots must be >= 1"):
        SlotPool(slots=2, max_queue=0, time_scale=1.0).resize(0)
