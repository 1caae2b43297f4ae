"""Each simulated server's own status endpoints tell the truth about its slots, over real HTTP.

A host stands in for Ollama, llama.cpp, vLLM or a bare OpenAI server; its parallelism may differ
from the configured slots and change at run time (``/sim/fail {"parallel": n}``). The figures
are read while real requests hold the slots; no wall-clock time is asserted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from yggcelery.settings import load_settings
from yggcelery.sim import SimFleet, SimHost, SimHostConfig
from yggcelery.testing.waiting import wait_until

MODEL = "qwen2.5-coder:7b"
Make = Callable[..., SimHost]


@pytest.fixture
def make_host() -> Iterator[Make]:
    """Factory: one started host standing in for ``server`` (config keywords given)."""
    fleets: list[SimFleet] = []

    def make(**kw: Any) -> SimHost:
        values: dict[str, Any] = {"name": "skadi", "model": MODEL, "time_scale": 0.01}
        values.update(kw)
        fleet = SimFleet([SimHostConfig(**values)]).start()
        fleets.append(fleet)
        return fleet["skadi"]

    yield make
    for fleet in fleets:
        fleet.stop()


@contextmanager
def busy(host: SimHost, requests: int) -> Iterator[None]:
    """``requests`` long chat completions in flight (running or queued); aborted on exit."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "ygg_service_s": 1e5}
    running = min(requests, host.pool.slots)
    with ThreadPoolExecutor(requests) as pool:
        for _ in range(requests):
            pool.submit(httpx.post, f"{host.url}/v1/chat/completions", json=body, timeout=60)
        wait_until(
            lambda: (
                (host.status()["busy_slots"], host.status()["queue_length"])
                == (running, requests - running)
            ),
            timeout_s=20,
            what=f"{running} running and {requests - running} queued",
        )
        try:
            yield
        finally:
            host.down()  # aborts every request in flight; their clients see a dropped connection
            host.up()


def get(host: SimHost, path: str) -> httpx.Response:
    return httpx.get(f"{host.url}{path}", timeout=5)


def samples(host: SimHost) -> dict[str, tuple[dict[str, str], float]]:
    """``/metrics`` parsed by prometheus_client: sample name → (labels, value)."""
    text = get(host, "/metrics").text
    return {
        s.name: (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# -- llama.cpp ----------------------------------------------------------------------------------


def test_llamacpp_props_report_the_servers_parallelism_not_the_configured_slots(
    make_host: Make,
) -> None:
    """Configured 3, server started with 2: ``/props`` total_slots and ``/slots`` say 2."""
    host = make_host(server="llamacpp", slots=3, parallel=2, context_length=4096)
    props = get(host, "/props").json()
    slots = get(host, "/slots").json()
    assert (props["total_slots"], props["default_generation_settings"]["n_ctx"]) == (2, 4096)
    assert props["model_path"].endswith(".gguf") and props["model_alias"] == MODEL
    assert [(s["id"], s["n_ctx"], s["is_processing"]) for s in slots] == [
        (0, 4096, False),
        (1, 4096, False),
    ]
    assert get(host, "/health").json() == {"status": "ok"}


def test_llamacpp_slots_and_metrics_show_busy_and_deferred_requests(make_host: Make) -> None:
    """4 requests on 2 slots: both slots processing; metrics say 2 processing, 2 deferred."""
    host = make_host(server="llamacpp", slots=3, parallel=2)
    with busy(host, 4):
        processing = [s["is_processing"] for s in get(host, "/slots").json()]
        metrics = samples(host)
    assert processing == [True, True]
    assert metrics["llamacpp:requests_processing"][1] == 2
    assert metrics["llamacpp:requests_deferred"][1] == 2


def test_llamacpp_without_metrics_answers_501_in_its_error_shape(make_host: Make) -> None:
    """``metrics=False`` (no ``--metrics``): ``/metrics`` is 501 not_supported_error."""
    host = make_host(server="llamacpp", metrics=False)
    response = get(host, "/metrics")
    assert response.status_code == 501
    assert response.json()["error"]["type"] == "not_supported_error"
    assert "--metrics" in response.json()["error"]["message"]


def test_llamacpp_has_no_ollama_api(make_host: Make) -> None:
    """``/api/tags`` and ``/api/chat`` on llama-server: 404 File Not Found, JSON."""
    host = make_host(server="llamacpp")
    tags = get(host, "/api/tags")
    chat = httpx.post(f"{host.url}/api/chat", json={"model": MODEL})
    expected = {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}
    assert (tags.status_code, tags.json()) == (404, expected)
    assert (chat.status_code, chat.json()) == (404, expected)


def test_llamacpp_models_list_carries_the_training_context(make_host: Make) -> None:
    """``/v1/models`` lists the model, owned by llamacpp, with its context in ``meta``."""
    host = make_host(server="llamacpp", context_length=2048)
    (entry,) = get(host, "/v1/models").json()["data"]
    assert (entry["id"], entry["owned_by"], entry["meta"]["n_ctx_train"]) == (
        MODEL,
        "llamacpp",
        2048,
    )


# -- vLLM ---------------------------------------------------------------------------------------


def test_vllm_models_and_health(make_host: Make) -> None:
    """``/v1/models`` has max_model_len; ``/health`` is an empty 200; ``/version`` a version."""
    host = make_host(server="vllm", context_length=16384)
    (entry,) = get(host, "/v1/models").json()["data"]
    health = get(host, "/health")
    assert (entry["max_model_len"], entry["owned_by"]) == (16384, "vllm")
    assert (health.status_code, health.content) == (200, b"")
    assert get(host, "/version").json()["version"]


def test_vllm_metrics_show_running_waiting_and_a_full_kv_cache(make_host: Make) -> None:
    """5 requests, server parallelism 3: running 3, waiting 2, KV cache use 1.0."""
    host = make_host(server="vllm", slots=2, parallel=3, context_length=4096)
    with busy(host, 5):
        metrics = samples(host)
    labels, running = metrics["vllm:num_requests_running"]
    assert (labels["model_name"], running) == (MODEL, 3)
    assert metrics["vllm:num_requests_waiting"][1] == 2
    assert metrics["vllm:kv_cache_usage_perc"][1] == 1.0


def test_vllm_cache_config_holds_the_servers_parallelism_of_full_contexts(
    make_host: Make,
) -> None:
    """num_gpu_blocks x block_size / max_model_len is the server's parallelism (3), idle."""
    host = make_host(server="vllm", slots=2, parallel=3, context_length=4096)
    info, _ = samples(host)["vllm:cache_config_info"]
    assert int(info["num_gpu_blocks"]) * int(info["block_size"]) / 4096 == 3
    assert samples(host)["vllm:kv_cache_usage_perc"][1] == 0.0


def test_vllm_unknown_path_is_fastapis_404(make_host: Make) -> None:
    """A path vLLM lacks answers ``{"detail": "Not Found"}``."""
    response = get(make_host(server="vllm"), "/props")
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


# -- Ollama and a bare OpenAI server ------------------------------------------------------------


def test_ollama_ps_lists_the_model_while_requests_run(make_host: Make) -> None:
    """``/api/ps`` is empty before the first request and lists the model while one runs."""
    host = make_host(server="ollama", context_length=4096)
    before = get(host, "/api/ps").json()["models"]
    with busy(host, 1):
        (entry,) = get(host, "/api/ps").json()["models"]
    assert before == []
    assert (entry["model"], entry["context_length"]) == (MODEL, 4096)
    assert entry["size_vram"] == entry["size"] > 0 and entry["expires_at"]


def test_ollama_has_no_llamacpp_endpoints(make_host: Make) -> None:
    """``/props`` on Ollama: 404 with Ollama's JSON error."""
    response = get(make_host(server="ollama"), "/props")
    assert (response.status_code, response.json()) == (404, {"error": "404 page not found"})


def test_a_bare_openai_server_serves_only_v1(make_host: Make) -> None:
    """server=openai: ``/v1/models`` answers, ``/api/version`` is OpenAI's Invalid URL 404."""
    host = make_host(server="openai")
    version = get(host, "/api/version")
    assert [m["id"] for m in get(host, "/v1/models").json()["data"]] == [MODEL]
    assert version.status_code == 404
    assert version.json()["error"]["message"] == "Invalid URL (GET /api/version)"


# -- parallelism changed at run time --------------------------------------------------------------


def test_parallel_changed_over_http_shows_in_every_surface_and_heal_restores_it(
    make_host: Make,
) -> None:
    """``/sim/fail {"parallel": 1}``: props say 1 and 3 requests run one at a time; heal: 2."""
    host = make_host(server="llamacpp", slots=2)
    reply = httpx.post(f"{host.url}/sim/fail", json={"parallel": 1})
    assert reply.json()["faults"]["parallel"] == 1
    assert get(host, "/props").json()["total_slots"] == 1
    with busy(host, 3):
        assert [s["is_processing"] for s in get(host, "/slots").json()] == [True]
        assert samples(host)["llamacpp:requests_deferred"][1] == 2
    httpx.post(f"{host.url}/sim/heal")
    status = host.status()
    assert get(host, "/props").json()["total_slots"] == 2
    assert (status["slots"], status["configured_slots"], status["faults"]["parallel"]) == (
        2,
        2,
        None,
    )


def test_parallel_raised_in_process_lets_more_requests_run(make_host: Make) -> None:
    """``set_parallel(4)`` on a 2-slot host: 4 requests run at once."""
    host = make_host(server="vllm", slots=2)
    host.set_parallel(4)
    with busy(host, 4):
        assert samples(host)["vllm:num_requests_running"][1] == 4


@pytest.mark.parametrize("body", [b'{"parallel": 0}', b'{"parallel": true}', b'{"parallel": 1.5}'])
def test_a_bad_parallel_is_refused(make_host: Make, body: bytes) -> None:
    """``parallel`` must be an integer >= 1; anything else is 400 and changes nothing."""
    host = make_host(slots=2)
    reply = httpx.post(f"{host.url}/sim/fail", content=body)
    assert reply.status_code == 400 and "parallel" in reply.json()["error"]
    assert host.status()["slots"] == 2


def test_settings_pick_the_server_and_the_sim_parallelism() -> None:
    """``hosts.x.server`` sets what the sim stands in for; ``sim.parallel`` its parallelism."""
    base = load_settings()
    hosts = {
        name: host.model_copy(update={"server": "llamacpp"} if name == "fenrir-chat" else {})
        for name, host in base.hosts.items()
    }
    settings = load_settings(hosts=hosts, sim={"parallel": {"fenrir-chat": 1}})
    fleet = SimFleet.from_settings(settings, free_ports=True)
    fenrir, skadi = fleet["fenrir-chat"].config, fleet["skadi-code"].config
    assert (fenrir.server, fenrir.slots, fenrir.server_parallel) == ("llamacpp", 3, 1)
    assert (skadi.server, skadi.server_parallel) == ("ollama", 2)
