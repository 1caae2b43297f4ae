"""Effective slots from a server reading (pure policy), and from live simulated servers."""

from __future__ import annotations

import httpx

from yggcelery.capacity import probe
from yggcelery.capacity.effective import effective_slots
from yggcelery.capacity.reading import Parallelism, ServerKind, ServerReading
from yggcelery.sim import SimFleet, SimHostConfig


def reading(
    kind: ServerKind = "llamacpp",
    *,
    parallel: int | None = None,
    running: int | None = None,
    waiting: int | None = None,
) -> ServerReading:
    found = None if parallel is None else Parallelism(slots=parallel, how="reported", source="x")
    return ServerReading(
        host="h", url="http://h", kind=kind, parallel=found, running=running, waiting=waiting
    )


def test_a_server_running_fewer_than_the_slots_lowers_them() -> None:
    """Configured 3, server runs 1: 1. Runs 3 or 5: 3 (more than configured is not used)."""
    assert effective_slots(3, reading(parallel=1), in_flight=0) == 1
    assert effective_slots(3, reading(parallel=3), in_flight=3) == 3
    assert effective_slots(3, reading(parallel=5), in_flight=3) == 3


def test_waiting_inside_the_server_while_our_slots_are_full_lowers_them() -> None:
    """vLLM running 2 with 1 waiting while our 4 are out: 2. Same with 3 out: unchanged."""
    busy = reading("vllm", parallel=8, running=2, waiting=1)
    assert effective_slots(4, busy, in_flight=4) == 2
    assert effective_slots(4, busy, in_flight=3) == 4


def test_vllms_kv_floor_alone_does_not_lower_the_slots() -> None:
    """vLLM's KV capacity below the slots, nothing waiting: keep the slots."""
    assert effective_slots(4, reading("vllm", parallel=2, running=2, waiting=0), in_flight=4) == 4


def test_no_reading_or_a_failed_one_keeps_the_configured_slots() -> None:
    """Unknown is not 1: a failed probe keeps the configured slots; never below 1."""
    failed = ServerReading.failed("h", "http://h", "host h: GET x: cannot connect")
    assert effective_slots(3, None, in_flight=0) == 3
    assert effective_slots(3, failed, in_flight=3) == 3
    assert effective_slots(3, reading(parallel=2, running=0, waiting=4), in_flight=3) == 1


def test_a_live_server_restarted_with_fewer_slots_drops_and_recovers() -> None:
    """llama.cpp sim configured 3: restarted at 1 the effective slots are 1; back at 3, 3."""
    config = SimHostConfig(name="fenrir", model="m:1b", slots=3, server="llamacpp")
    with SimFleet([config]) as fleet, httpx.Client() as client:
        host = fleet["fenrir"]
        settings = host.config.host_settings(host.url)

        def now() -> int:
            found = probe("fenrir", settings, client, local_gpu=False)
            return effective_slots(settings.slots, found, in_flight=0)

        healthy = now()
        host.set_parallel(1)
        dropped = now()
        host.set_parallel(None)
        assert (healthy, dropped, now()) == (3, 1, 3)
