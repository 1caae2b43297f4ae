"""A simulated host under load and under injected faults, over real HTTP on loopback.

No timed assertions: concurrency, queueing and service times are read from the simulator's own
counters and records (simulated seconds), never from wall-clock measurements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from yggcelery.sim import SimFleet, SimHost, SimHostConfig
from yggcelery.sim import ollama as ollama_dialect

MODEL = "qwen2.5-coder:7b"
Make = Callable[..., SimHost]


@pytest.fixture
def make_host() -> Iterator[Make]:
    """Factory: one started simulated host (config keywords given), stopped after the test."""
    fleets: list[SimFleet] = []

    def make(**kw: Any) -> SimHost:
        values: dict[str, Any] = {"name": "skadi", "model": MODEL, "kind": "code"}
        values.update(kw)
        fleet = SimFleet([SimHostConfig(**values)]).start()
        fleets.append(fleet)
        return fleet["skadi"]

    yield make
    for fleet in fleets:
        fleet.stop()


def chat(
    url: str, *, service_s: float | None = None, timeout_s: float = 30, **kw: Any
) -> httpx.Response:
    """One non-streamed Ollama chat; ``service_s`` asks for that simulated service time."""
    options = {"ygg_service_s": service_s} if service_s is not None else {}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": False}
    return httpx.post(f"{url}/api/chat", json={**body, "options": options}, timeout=timeout_s, **kw)


def wait_until(check: Callable[[], bool], *, timeout_s: float = 20.0) -> None:
    """Poll ``check`` until it holds (a wait for a state, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


def refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/api/version", timeout=2)
    except httpx.ConnectError:
        return True
    return False


def test_two_slots_never_run_more_than_two_requests(make_host: Make) -> None:
    """Ten concurrent requests on 2 slots: all served, at most 2 at once, on slots 0 and 1."""
    host = make_host(slots=2, time_scale=0.01)
    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda _: chat(host.url, service_s=10), range(10)))
    status = httpx.get(f"{host.url}/sim/status").json()
    rows = host.records()
    assert [r.status_code for r in replies] == [200] * 10
    assert (status["max_concurrency"], status["served"], status["busy_slots"]) == (2, 10, 0)
    assert {r["slot"] for r in rows} == {0, 1}
    assert max(_overlap(rows, r["started"]) for r in rows) == 2
    assert status["busy_slot_s"] == pytest.approx(100.0)


def _overlap(rows: list[dict[str, Any]], at: float) -> int:
    return sum(1 for r in rows if r["started"] <= at < r["finished"])


def test_requests_past_max_queue_get_503_in_both_dialects(make_host: Make) -> None:
    """1 slot busy, 2 waiting (max_queue=2): the next requests are 503 'server busy'."""
    host = make_host(slots=1, max_queue=2, time_scale=0.01)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(chat, host.url, service_s=100)
        wait_until(lambda: host.status()["busy_slots"] == 1)
        queued = [pool.submit(chat, host.url, service_s=1) for _ in range(2)]
        wait_until(lambda: host.status()["queue_length"] == 2)
        busy = chat(host.url, service_s=1)
        with (
            openai.OpenAI(base_url=f"{host.url}/v1", api_key="x", max_retries=0) as client,
            pytest.raises(openai.APIStatusError) as caught,
        ):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
        results = [f.result() for f in [first, *queued]]
    assert (busy.status_code, busy.json()) == (503, {"error": ollama_dialect.BUSY})
    assert (
        busy.json()["error"] == "server busy, please try again.  maximum pending requests exceeded"
    )
    assert caught.value.status_code == 503
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == "The server is overloaded or not ready yet."
    assert [r.status_code for r in results] == [200, 200, 200]
    assert host.status()["rejected"] == 2
    assert sorted(r["status"] for r in host.records()) == [200, 200, 200, 503, 503]


def test_service_time_follows_kind_tokens_and_overrides(make_host: Make) -> None:
    """Recorded service: base of the kind + tokens, or the body/header override, x time_scale."""
    host = make_host(
        time_scale=0.001,
        base_s={"code": 4.0, "text": 2.0},
        per_token_s=0.02,
        default_output_tokens=100,
    )
    url = f"{host.url}/api/chat"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": False}
    httpx.post(url, json=body)  # code: 4 + 100 x 0.02
    httpx.post(url, json={**body, "options": {"num_predict": 50}}, headers={"X-Ygg-Kind": "text"})
    httpx.post(url, json={**body, "options": {"ygg_service_s": 12.5}})
    httpx.post(url, json=body, headers={"X-Ygg-Service-S": "3"})
    oai_body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "ygg_service_s": 7}
    httpx.post(f"{host.url}/v1/chat/completions", json=oai_body)
    httpx.post(f"{host.url}/v1/chat/completions", json={**oai_body, "max_tokens": 10})
    rows = host.records()
    assert [r["service_s"] for r in rows] == pytest.approx([6.0, 3.0, 12.5, 3.0, 7.0, 7.0])
    assert [r["real_service_s"] for r in rows] == pytest.approx(
        [0.006, 0.003, 0.0125, 0.003, 0.007, 0.007]
    )
    assert host.status()["busy_slot_s"] == pytest.approx(38.5)


def test_fleet_time_scale_override_reaches_every_host() -> None:
    """``SimFleet.from_settings(time_scale=...)`` replaces the settings' scale on all hosts."""
    from yggcelery.settings import load_settings

    fleet = SimFleet.from_settings(load_settings(), time_scale=0.25, free_ports=True)
    assert {h.config.time_scale for h in fleet} == {0.25}
    assert {h.config.port for h in fleet} == {0}


def test_error_rate_one_answers_500_in_each_dialect(make_host: Make) -> None:
    """error_rate=1: every model call is a 500 with the dialect's error body; heal ends it."""
    host = make_host(time_scale=0.001)
    host.fail(error_rate=1.0)
    failed = chat(host.url)
    with (
        openai.OpenAI(base_url=f"{host.url}/v1", api_key="x", max_retries=0) as client,
        pytest.raises(openai.InternalServerError),
    ):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    host.heal()
    healed = chat(host.url)
    assert (failed.status_code, failed.json()) == (500, {"error": ollama_dialect.RUNNER_STOPPED})
    assert healed.status_code == 200


def test_down_refuses_connections_and_up_serves_again_on_the_same_port(make_host: Make) -> None:
    """down: connection refused; up: the same URL answers again."""
    host = make_host(time_scale=0.001)
    url = host.url
    assert chat(url).status_code == 200
    host.down()
    assert refused(url)
    assert host.status()["faults"]["down"] is True
    host.up()
    assert host.url == url
    assert chat(url).status_code == 200


def test_down_aborts_requests_in_flight_and_frees_their_slots(make_host: Make) -> None:
    """A request being served when the host goes down fails; its slot is free afterwards."""
    host = make_host(slots=1, time_scale=0.01)
    with ThreadPoolExecutor(1) as pool:
        pending: Future[httpx.Response] = pool.submit(chat, host.url, service_s=1000)
        wait_until(lambda: host.status()["busy_slots"] == 1)
        host.down()
        with pytest.raises(httpx.TransportError):
            pending.result()
    host.up()
    assert host.status()["busy_slots"] == 0
    assert [r["status"] for r in host.records()] == [None]


def test_down_over_http_stays_down_until_up_in_process(make_host: Make) -> None:
    """``POST /sim/fail {"down": true}`` answers first, then refuses until ``up()``."""
    host = make_host(time_scale=0.001)
    reply = httpx.post(f"{host.url}/sim/fail", json={"down": True})
    assert reply.status_code == 200 and reply.json()["faults"]["down"] is True
    wait_until(lambda: refused(host.url))
    host.up()
    assert chat(host.url).status_code == 200


def test_a_client_that_gives_up_frees_its_slot_and_is_recorded_499(make_host: Make) -> None:
    """A client timing out mid-service: its slot is freed and its record says 499."""
    host = make_host(slots=1, time_scale=0.01)
    with pytest.raises(httpx.ReadTimeout):
        chat(host.url, service_s=1000, timeout_s=0.3)
    wait_until(lambda: host.records()[0]["status"] is not None)
    assert host.records()[0]["status"] == 499
    assert host.status()["busy_slots"] == 0
    assert chat(host.url, service_s=1).status_code == 200


def test_down_for_s_over_http_comes_back_by_itself(make_host: Make) -> None:
    """``POST /sim/fail {"down_for_s": N}`` answers, refuses connections, then serves again."""
    host = make_host(time_scale=0.001)
    reply = httpx.post(f"{host.url}/sim/fail", json={"down_for_s": 0.5})
    assert reply.status_code == 200 and reply.json()["faults"]["down"] is True
    wait_until(lambda: refused(host.url))
    wait_until(lambda: not refused(host.url))
    assert chat(host.url).status_code == 200


def test_hang_accepts_and_never_answers(make_host: Make) -> None:
    """hang: the client times out waiting; control endpoints still answer; heal ends it."""
    host = make_host(time_scale=0.001)
    reply = httpx.post(f"{host.url}/sim/fail", json={"hang": True})
    assert reply.json()["faults"]["hang"] is True
    with pytest.raises(httpx.ReadTimeout):
        chat(host.url, timeout_s=0.5)
    assert httpx.get(f"{host.url}/sim/status").json()["faults"]["hang"] is True
    httpx.post(f"{host.url}/sim/heal")
    assert chat(host.url).status_code == 200


def test_latency_is_added_before_queueing_and_recorded(make_host: Make) -> None:
    """latency_s over HTTP: requests carry it in their record; the service time is unchanged."""
    host = make_host(time_scale=0.001)
    httpx.post(f"{host.url}/sim/fail", json={"latency_s": 5})
    reply = chat(host.url, service_s=2)
    row = host.records()[0]
    assert reply.status_code == 200
    assert (row["latency_s"], row["service_s"]) == (5.0, 2.0)


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"error_rate": 2}', b'{"hang": "yes"}', b'{"explode": true}',
     b'{"down": false, "down_for_s": 1}'],
)  # fmt: skip
def test_bad_fail_requests_are_400_and_change_nothing(make_host: Make, body: bytes) -> None:
    """An invalid /sim/fail body is refused with a reason and leaves the faults alone."""
    host = make_host(time_scale=0.001)
    reply = httpx.post(f"{host.url}/sim/fail", content=body)
    assert reply.status_code == 400 and reply.json()["error"]
    assert host.status()["faults"] == {
        "down": False,
        "error_rate": 0.0,
        "latency_s": 0.0,
        "hang": False,
        "parallel": None,
    }


def test_reset_zeroes_stats_and_records(make_host: Make) -> None:
    """``POST /sim/reset``: served, busy slot-seconds, max concurrency and records start over."""
    host = make_host(time_scale=0.001)
    chat(host.url, service_s=4)
    before = host.status()
    after = httpx.post(f"{host.url}/sim/reset").json()
    assert (before["served"], before["max_concurrency"]) == (1, 1)
    assert (after["served"], after["busy_slot_s"], after["max_concurrency"]) == (0, 0.0, 0)
    assert httpx.get(f"{host.url}/sim/records").json() == []


def test_metrics_are_prometheus_text_with_requests_and_slots(make_host: Make) -> None:
    """``/metrics`` parses as Prometheus text: requests by status, slots, busy slot-seconds."""
    host = make_host(slots=3, time_scale=0.001)
    chat(host.url, service_s=2)
    chat(host.url, service_s=2)
    httpx.post(f"{host.url}/api/chat", content=b"{}")
    text = httpx.get(f"{host.url}/metrics").text
    samples = {
        (s.name, s.labels.get("status")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("ygg_sim_requests_total", "200")] == 2
    assert samples[("ygg_sim_requests_total", "400")] == 1
    assert samples[("ygg_sim_slots", None)] == 3
    assert samples[("ygg_sim_busy_slot_seconds", None)] == pytest.approx(4.0)
    assert samples[("ygg_sim_service_seconds_count", None)] == 2


def test_fleet_serves_the_configured_hosts_on_free_ports_and_overrides_settings() -> None:
    """from_settings(free_ports=True) + host_overrides(): settings that point at the simulator."""
    from yggcelery.settings import load_settings

    base = load_settings()
    with SimFleet.from_settings(base, time_scale=0.001, free_ports=True) as fleet:
        settings = load_settings(hosts=fleet.host_overrides())
        assert set(fleet.base_urls) == set(base.hosts)
        for name, host in settings.hosts.items():
            assert host.base_url == fleet.base_urls[name] != base.hosts[name].base_url
            assert (host.model, host.slots, host.kinds) == (
                base.hosts[name].model,
                base.hosts[name].slots,
                base.hosts[name].kinds,
            )
            assert httpx.get(f"{host.base_url}/api/tags").json()["models"][0]["name"] == host.model
        urls = fleet.base_urls
    assert all(refused(url) for url in urls.values())


def test_a_busy_port_is_a_clear_error() -> None:
    """Starting a host on a port already in use fails with a message naming host and port."""
    from yggcelery.errors import ConfigError

    with SimFleet([SimHostConfig(name="a", model=MODEL)]) as fleet:
        taken = fleet["a"].port
        with pytest.raises(ConfigError, match=f"sim host b: cannot listen on 127.0.0.1:{taken}"):
            SimFleet([SimHostConfig(name="b", model=MODEL, port=taken)]).start()
