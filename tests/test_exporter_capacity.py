"""The exporter's capacity series and GPU sources: real Redis, simulated hosts, a bare HTTP server.

The workers' live readings (``ygg:capacity:<host>``) are written here as a worker writes them,
so each case is exact; ``tests/test_capacity_live.py`` shows real workers writing them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from prometheus_client.core import Metric

from yggcelery.beads import JsonlStore
from yggcelery.capacity.live import KEY, LiveCapacity
from yggcelery.celery_app import make_app
from yggcelery.exporter.collector import YggCollector
from yggcelery.exporter.gpu import GpuProbe
from yggcelery.llm.health import HostHealth
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.redis import free_port

HOSTS = ("surtr-reasoning", "fenrir-chat", "skadi-code")


def live(host: str, *, effective: int, waiting: int | None, gpu: float | None) -> LiveCapacity:
    return LiveCapacity(
        host=host, configured=3, effective=effective, parallel=effective,
        parallel_source="reported: /slots lists 1", running=effective, waiting=waiting,
        in_flight=3, gpu=gpu, gpu_source="NVML" if gpu is not None else None, kind="llamacpp",
        error=None, at=0.0,
    )  # fmt: skip


class _NotFound(BaseHTTPRequestHandler):
    """A server that answers (so the host is up) but is no simulator and has no /api/ps."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def bare_server() -> Iterator[str]:
    """The URL of a real HTTP server on loopback that answers 404 to everything."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def write(settings: Settings, reading: LiveCapacity) -> None:
    """Store ``reading`` as the host's worker would."""
    client = redis.Redis.from_url(settings.result_backend)
    client.set(KEY.format(host=reading.host), reading.to_json())


def collect(settings: Settings) -> dict[str, dict[str, float]]:
    """One collection: metric name -> host -> value, for the per-host gauges."""
    client = redis.Redis.from_url(settings.result_backend)
    collector = YggCollector(
        settings,
        app=make_app(settings),
        store=JsonlStore(settings.beads.jsonl_path),
        health=HostHealth(settings),
        client=client,
    )
    try:
        families: list[Metric] = list(collector.collect())
    finally:
        collector.close()
    out: dict[str, dict[str, float]] = {}
    for family in families:
        for sample in family.samples:
            if "host" in sample.labels and "priority" not in sample.labels:
                out.setdefault(sample.name, {})[sample.labels["host"]] = sample.value
    return out


def test_configured_effective_and_server_queue_follow_the_live_readings(
    make_settings: Callable[..., Settings], sim_fleet: Callable[..., SimFleet]
) -> None:
    """fenrir read at 1 of 3 with 2 waiting: effective 1, waiting 2; unread hosts: configured,
    and no server-queue series."""
    settings = make_settings(fleet=sim_fleet())
    settings.beads.dir.mkdir(parents=True)
    write(settings, live("fenrir-chat", effective=1, waiting=2, gpu=0.9))
    samples = collect(settings)
    assert samples["ygg_slots_configured"] == dict(zip(HOSTS, (2, 3, 2), strict=True))
    assert samples["ygg_slots_effective"] == dict(zip(HOSTS, (2, 1, 2), strict=True))
    assert samples["ygg_server_waiting"] == {"fenrir-chat": 2}
    assert samples["ygg_gpu_utilization"]["fenrir-chat"] == 0, "a simulator is read at scrape"


def test_gpu_comes_from_the_live_reading_where_no_simulator_answers(
    make_settings: Callable[..., Settings], bare_server: str
) -> None:
    """A real (non-simulated) server with a fresh reading of 90 %: 0.9; without one: no series
    (no NVML here, no /api/ps: nothing made up)."""
    seed = make_settings().hosts
    hosts = {name: seed[name].model_copy(update={"base_url": bare_server}) for name in HOSTS}
    settings = make_settings(hosts=hosts)
    settings.beads.dir.mkdir(parents=True)
    write(settings, live("skadi-code", effective=2, waiting=0, gpu=0.9))
    gpu = collect(settings)["ygg_gpu_utilization"]
    assert gpu == {"skadi-code": pytest.approx(0.9)}


def test_a_simulator_beats_the_live_reading_and_a_closed_port_uses_it(
    sim_fleet: Callable[..., SimFleet],
) -> None:
    """GpuProbe: a simulated host's own busy share (0 idle) wins over a reading of 90 %;
    a host whose /sim/status does not answer uses the reading."""
    fleet = sim_fleet()
    host = fleet.host_overrides()["fenrir-chat"]
    closed = host.model_copy(update={"base_url": f"http://127.0.0.1:{free_port()}"})
    reading = live("fenrir-chat", effective=3, waiting=0, gpu=0.9)
    probe = GpuProbe()
    try:
        assert probe.utilization("fenrir-chat", host, busy=0, live=reading) == 0
        assert probe.utilization("fenrir-chat", closed, busy=0, live=reading) == 0.9
        assert probe.utilization("fenrir-chat", closed, busy=0) is None
        openai = closed.model_copy(update={"dialect": "openai"})  # no /api/ps: busy / slots
        assert probe.utilization("fenrir-chat", openai, busy=1) == pytest.approx(1 / 3)
    finally:
        probe.close()
