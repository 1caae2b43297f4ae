"""Live capacity: workers re-probe their host's server, and effective slots follow the server.

Real Redis, simulated llama.cpp and vLLM servers whose parallelism changes at run time, real
``ygg worker`` processes (the bootstep in their main process writes ``ygg:capacity:<host>``),
and, marked ``llm``, a real llama.cpp ``llama-server`` started with fewer slots than configured.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from yggcelery.beads import JsonlStore
from yggcelery.capacity.live import (
    KEY,
    CapacityStep,
    LiveCapacity,
    LiveCheck,
    capacity_rows,
    effective_slots_by_host,
    host_of_worker,
    read_capacity,
)
from yggcelery.capacity.reading import GpuUse, Parallelism, ServerReading
from yggcelery.celery_app import make_app
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.settings import HostSettings, Settings, to_env
from yggcelery.sim import SimFleet, SimHost, SimHostConfig
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.llamaserver import LlamaServer, missing
from yggcelery.testing.redis import RedisServer
from yggcelery.testing.waiting import wait_until

MODEL = "llama3.1:8b"
HOST = "fenrir-chat"
#: Fast probes for the tests; the default (10 s) is what bench/relearn.py measures.
PROBE_S = 0.5
Make = Callable[..., Settings]
YGG = str(Path(sys.executable).with_name("ygg"))


def reading(
    *,
    parallel: int | None = 3,
    running: int | None = 0,
    waiting: int | None = 0,
    error: str | None = None,
) -> ServerReading:
    if error is not None:
        return ServerReading.failed(HOST, "http://h:1", error, kind="llamacpp")
    found = None if parallel is None else Parallelism(slots=parallel, how="reported", source="x")
    return ServerReading(
        host=HOST,
        url="http://h:1",
        kind="llamacpp",
        parallel=found,
        running=running,
        waiting=waiting,
        gpu=GpuUse(fraction=0.5, source="llama.cpp busy slots"),
    )


def live_of(found: ServerReading, *, configured: int = 3, in_flight: int = 0) -> LiveCapacity:
    return LiveCapacity.of(found, configured=configured, in_flight=in_flight, at=100.0)


@pytest.fixture
def sim() -> Iterator[Callable[..., SimHost]]:
    """Factory: one started simulated host named fenrir-chat (config keywords given)."""
    fleets: list[SimFleet] = []

    def make(**kw: Any) -> SimHost:
        values: dict[str, Any] = {"name": HOST, "model": MODEL, "slots": 3, "time_scale": 0.05}
        fleet = SimFleet([SimHostConfig(**{**values, **kw})]).start()
        fleets.append(fleet)
        return fleet[HOST]

    yield make
    for fleet in fleets:
        fleet.stop()


def settings_for(make_settings: Make, host: HostSettings | SimHost) -> Settings:
    """The seed fleet with fenrir-chat served by ``host``, probed every :data:`PROBE_S`."""
    seed = make_settings().hosts
    if isinstance(host, SimHost):
        host = seed[HOST].model_copy(update={"base_url": host.url, "slots": host.config.slots})
    return make_settings(
        hosts={**seed, HOST: host}, capacity={"probe_s": PROBE_S, "timeout_s": 2.0}
    )


def wait_effective(client: redis.Redis, want: int, *, timeout_s: float = 30) -> LiveCapacity:
    """The host's fresh reading, once it says ``want`` effective slots."""

    def check() -> LiveCapacity | None:
        found = read_capacity(client, [HOST])[HOST]
        return found if found is not None and found.effective == want else None

    found = wait_until(check, timeout_s=timeout_s, what=f"{HOST} at {want} effective slots")
    assert found is not None
    return found


# -- the policy and the stored form (pure) ----------------------------------------------------


def test_a_reading_below_the_slots_or_waiting_while_full_lowers_the_effective_slots() -> None:
    """Server at 1 of 3: 1. At 3 with 2 waiting and 1 running while our 3 are out: 1."""
    assert live_of(reading(parallel=1)).effective == 1
    waiting = reading(parallel=3, running=1, waiting=2)
    assert live_of(waiting, in_flight=3).effective == 1
    assert live_of(waiting, in_flight=2).effective == 3, "slots not full: the wait is not ours"
    assert live_of(reading(parallel=3)).effective == 3


def test_a_failed_reading_keeps_the_configured_slots_and_says_why() -> None:
    """A probe that could not read the server: configured slots, the error line, no figures."""
    found = live_of(reading(error="host fenrir-chat: GET /props: cannot connect"))
    assert (found.effective, found.parallel, found.gpu) == (3, None, None)
    assert found.error == "host fenrir-chat: GET /props: cannot connect"


def test_a_reading_round_trips_through_json_and_refuses_garbage() -> None:
    """to_json/from_json keep every field; JSON of something else is a ValueError."""
    found = live_of(reading(parallel=2, running=2, waiting=1), in_flight=3)
    assert LiveCapacity.from_json(found.to_json()) == found
    assert json.loads(found.to_json())["parallel_source"] == "reported: x"
    for raw in ("[1, 2]", '{"host": "x"}', "not json"):
        with pytest.raises(ValueError, match="not a capacity reading"):
            LiveCapacity.from_json(raw)


def test_effective_slots_are_configured_without_a_reading_and_never_above_it(
    make_settings: Make,
) -> None:
    """No reading: configured. A reading of 1: 1. A stale reading saying 5 of 5: the config's 3."""
    settings = make_settings()
    assert settings.hosts[HOST].slots == 3
    none = effective_slots_by_host(settings, {})
    assert none == {name: host.slots for name, host in settings.hosts.items()}
    low = live_of(reading(parallel=1))
    high = live_of(reading(parallel=5), configured=5)
    assert effective_slots_by_host(settings, {HOST: low})[HOST] == 1
    assert effective_slots_by_host(settings, {HOST: high})[HOST] == 3


def test_a_worker_serves_the_host_its_node_or_its_one_queue_names(make_settings: Make) -> None:
    """`ygg worker fenrir-chat` (fenrir-chat@m), a plain -Q fenrir-chat, control: None."""
    settings = make_settings()
    assert host_of_worker("fenrir-chat@m", [HOST], settings) == HOST
    assert host_of_worker("celery@m", [HOST], settings) == HOST
    assert host_of_worker("control@m", ["ygg-control"], settings) is None
    assert host_of_worker("celery@m", [HOST, "skadi-code"], settings) is None


# -- Redis: written, read, expired ------------------------------------------------------------


def test_unwritten_and_unreadable_readings_are_none(redis_db: RedisServer) -> None:
    """A host without a key and one whose key is not a reading both read as None."""
    client = redis.Redis.from_url(redis_db.url(1))
    client.set(KEY.format(host="skadi-code"), b"<html>")
    assert read_capacity(client, [HOST, "skadi-code"]) == {HOST: None, "skadi-code": None}
    assert read_capacity(client, []) == {}


def test_a_check_writes_the_reading_with_a_ttl_of_three_periods(
    make_settings: Make, sim: Callable[..., SimHost]
) -> None:
    """One check of a llama.cpp sim at 1 of 3: stored, effective 1, TTL 3 probe periods."""
    host = sim(server="llamacpp", parallel=1)
    settings = settings_for(make_settings, host)
    client = redis.Redis.from_url(settings.result_backend)
    with contextlib.closing(LiveCheck(settings, HOST, in_flight=lambda: 0, client=client)) as check:
        written = check.check()
    assert read_capacity(client, [HOST])[HOST] == written
    assert (written.effective, written.parallel, written.parallel_source) == (
        1, 1, "reported: /slots lists 1",
    )  # fmt: skip
    assert written.gpu_source == "llama.cpp busy slots"
    assert 0 < client.pttl(KEY.format(host=HOST)) <= 3 * PROBE_S * 1000


def test_requests_waiting_in_a_full_vllm_lower_the_slots_until_it_runs_them(
    make_settings: Make, sim: Callable[..., SimHost], request: pytest.FixtureRequest
) -> None:
    """vLLM runs 2 of 4 with 2 waiting while our 4 are out: 2; once it runs all 4: 4 again."""
    host = sim(server="vllm", slots=4, parallel=2)
    settings = settings_for(make_settings, host)
    check = LiveCheck(settings, HOST, in_flight=lambda: 4)
    request.addfinalizer(check.close)
    for _ in range(4):
        _hold_slot(host)
    wait_until(lambda: host.status()["queue_length"] == 2, timeout_s=20, what="2 waiting")
    full = check.check()
    assert (full.effective, full.running, full.waiting) == (2, 2, 2)
    host.set_parallel(4)

    def recovered() -> LiveCapacity | None:
        found = check.check()
        return found if found.effective == 4 else None

    back = wait_until(recovered, timeout_s=20, what="all 4 slots back")
    assert back is not None
    assert (back.running, back.waiting) == (4, 0)
    assert read_capacity(check.client, [HOST])[HOST] == back


def _hold_slot(host: SimHost) -> None:
    """A model request that holds a slot (or waits for one) until the simulator stops."""

    def call() -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hold"}]}
        with contextlib.suppress(httpx.HTTPError):  # the simulator stops under it: it ends so
            httpx.post(
                f"{host.url}/v1/chat/completions",
                json=body,
                headers={"X-Ygg-Service-S": "1000000"},
                timeout=120,
            )

    threading.Thread(target=call, daemon=True).start()


def test_capacity_rows_show_configured_effective_queue_and_gpu_per_host(
    make_settings: Make,
) -> None:
    """ygg status rows: fenrir with its reading (1 of 3, 2 waiting, GPU 50 %), others unread."""
    settings = make_settings()
    client = redis.Redis.from_url(settings.result_backend)
    found = live_of(reading(parallel=1, running=1, waiting=2), in_flight=3)
    client.set(KEY.format(host=HOST), found.to_json())
    rows = {row["host"]: row for row in capacity_rows(settings, client, now=112.0)}
    assert rows[HOST] == {
        "host": HOST, "configured": 3, "effective": 1, "parallel": 1,
        "parallel_source": "reported: x", "running": 1, "waiting": 2, "gpu": 0.5,
        "gpu_source": "llama.cpp busy slots", "error": None, "age_s": 12.0,
    }  # fmt: skip
    assert rows["skadi-code"]["effective"] == 2 and rows["skadi-code"]["age_s"] is None


# -- real workers -----------------------------------------------------------------------------


def test_every_worker_runs_the_capacity_step(make_settings: Make) -> None:
    """The app's worker blueprint includes CapacityStep (celery_app registers it)."""
    assert CapacityStep in make_app(make_settings()).steps["worker"]


def test_a_worker_follows_its_servers_parallelism_down_and_back(
    make_settings: Make,
    sim: Callable[..., SimHost],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """`ygg worker` for a llama.cpp sim of 3: effective 3, 1 after the server drops to 1, then 3;
    a stopped worker's reading expires."""
    host = sim(server="llamacpp")
    settings = settings_for(make_settings, host)
    client = redis.Redis.from_url(settings.result_backend)
    cluster = local_cluster(settings, hosts=[HOST], control=False)

    healthy = wait_effective(client, 3)
    assert (healthy.parallel, healthy.configured, healthy.error) == (3, 3, None)
    host.set_parallel(1)
    dropped = wait_effective(client, 1)
    assert (dropped.parallel, dropped.configured) == (1, 3)
    host.set_parallel(None)
    wait_effective(client, 3)

    cluster.kill_worker(HOST)
    wait_until(
        lambda: read_capacity(client, [HOST])[HOST] is None,
        timeout_s=30,
        what="the dead worker's reading to expire",
    )


def test_the_dispatcher_fills_only_the_effective_slots(make_settings: Make) -> None:
    """fenrir's worker read 1 of 3: the dispatcher's room there is inflight_per_slot x 1;
    hosts without a reading keep inflight_per_slot x their configured slots."""
    settings = make_settings()
    client = redis.Redis.from_url(settings.result_backend)
    client.set(KEY.format(host=HOST), live_of(reading(parallel=1)).to_json())
    dispatcher = CeleryDispatcher(settings, JsonlStore(settings.beads.jsonl_path))
    per_slot = settings.dispatch.inflight_per_slot
    assert dispatcher.effective_slots() == {"surtr-reasoning": 2, HOST: 1, "skadi-code": 2}
    assert dispatcher.room() == {
        "surtr-reasoning": int(2 * per_slot), HOST: int(1 * per_slot),
        "skadi-code": int(2 * per_slot),
    }  # fmt: skip


@pytest.mark.llm
@pytest.mark.skipif(missing() is not None, reason=str(missing()))
def test_a_real_llama_server_with_one_slot_where_three_are_configured_gives_one(
    make_settings: Make, local_cluster: Callable[..., LocalCluster]
) -> None:
    """llama-server --parallel 1, hosts.fenrir-chat.slots = 3: the worker's reading says 1,
    and `ygg doctor` fails with a line naming the host, both numbers and the fix."""
    with LlamaServer(name=HOST, parallel=1, ctx=256) as server:
        host = server.host_settings(make_settings().hosts[HOST]).model_copy(update={"slots": 3})
        settings = settings_for(make_settings, host)
        client = redis.Redis.from_url(settings.result_backend)
        local_cluster(settings, hosts=[HOST], control=False)
        found = wait_effective(client, 1, timeout_s=60)
        assert (found.configured, found.parallel, found.kind) == (3, 1, "llamacpp")
        assert found.parallel_source == "reported: /slots lists 1"
        assert found.gpu_source in {"llama.cpp busy slots", "NVML"}

        env = {**os.environ, **to_env(settings)}
        doctor = subprocess.run([YGG, "doctor", "--no-measure"], env=env, capture_output=True,
                                text=True, timeout=120, check=False)  # fmt: skip
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    line = next(ln for ln in doctor.stdout.splitlines() if f"parallelism {HOST}" in ln)
    assert line.startswith("FAIL"), doctor.stdout
    assert "server runs 1 (reported: /slots lists 1), slots = 3" in line, line
    assert f"set hosts.{HOST}.slots = 1" in doctor.stdout, doctor.stdout
