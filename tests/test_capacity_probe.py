"""Probes read each server kind's own endpoints: against the simulator standing in for each.

Real HTTP on loopback: simulated Ollama, llama.cpp, vLLM and bare OpenAI servers, a server that
answers HTML to everything, one that accepts connections and never answers, and a closed port.
The parallelism mismatch is tried both ways: the server running fewer and more than the slots.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from yggcelery.capacity import ServerReading, detect, probe, probe_all
from yggcelery.capacity.fetch import Target
from yggcelery.capacity.hostchecks import check_parallelism
from yggcelery.settings import CapacitySettings, HostSettings
from yggcelery.sim import SimFleet, SimHost, SimHostConfig
from yggcelery.testing.llamaserver import MODEL_ALIAS, LlamaServer, missing
from yggcelery.testing.redis import free_port

MODEL = "llama3.1:8b"
FAST = CapacitySettings(timeout_s=2.0, measure_timeout_s=30.0)
Make = Callable[..., SimHost]


@pytest.fixture
def make_host() -> Iterator[Make]:
    """Factory: one started simulated host (config keywords given), stopped after the test."""
    fleets: list[SimFleet] = []

    def make(**kw: Any) -> SimHost:
        values: dict[str, Any] = {"name": "fenrir", "model": MODEL, "time_scale": 0.05}
        values.update(kw)
        fleet = SimFleet([SimHostConfig(**values)]).start()
        fleets.append(fleet)
        return fleet[values["name"]]

    yield make
    for fleet in fleets:
        fleet.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as http:
        yield http


def settings_of(host: SimHost, **update: Any) -> HostSettings:
    """The host's settings as ygg.toml would have them (``server`` auto unless given)."""
    return host.config.host_settings(host.url).model_copy(update=update)


def read(
    host: SimHost, client: httpx.Client, *, measure: bool = False, **update: Any
) -> ServerReading:
    """Probe ``host`` as configured (plus ``update``), without NVML."""
    return probe(
        host.name,
        settings_of(host, **update),
        client,
        capacity=FAST,
        measure=measure,
        local_gpu=False,
    )


# -- llama.cpp ----------------------------------------------------------------------------------


def test_llamacpp_reading_has_slots_context_model_and_queue(
    make_host: Make, client: httpx.Client
) -> None:
    """llama.cpp: parallelism from /slots, n_ctx from /props, the model alias, the queue counts."""
    host = make_host(server="llamacpp", slots=3, parallel=3, context_length=4096)
    reading = read(host, client)
    assert reading.ok and reading.kind == "llamacpp"
    assert reading.parallel is not None
    assert (reading.parallel.slots, reading.parallel.how) == (3, "reported")
    assert (reading.model, reading.context, reading.running, reading.waiting) == (MODEL, 4096, 0, 0)
    assert reading.gpu is not None and reading.gpu.source == "llama.cpp busy slots"


def test_llamacpp_below_and_above_the_configured_slots(
    make_host: Make, client: httpx.Client
) -> None:
    """Configured 3: a server started with --parallel 1 reads 1, one with --parallel 5 reads 5."""
    low = read(make_host(name="low", server="llamacpp", slots=3, parallel=1), client)
    high = read(make_host(name="high", server="llamacpp", slots=3, parallel=5), client)
    assert low.parallel is not None and low.parallel.slots == 1
    assert high.parallel is not None and high.parallel.slots == 5


def test_llamacpp_follows_a_parallelism_changed_at_run_time(
    make_host: Make, client: httpx.Client
) -> None:
    """A restart with another --parallel (set_parallel) is what the next probe reads."""
    host = make_host(server="llamacpp", slots=2)
    before = read(host, client).parallel
    host.set_parallel(1)
    after = read(host, client).parallel
    assert (before and before.slots, after and after.slots) == (2, 1)


def test_llamacpp_without_metrics_still_reads_slots_and_says_why(
    make_host: Make, client: httpx.Client
) -> None:
    """Without --metrics the waiting count is unknown, with a note naming the flag."""
    reading = read(make_host(server="llamacpp", metrics=False), client)
    assert reading.ok and reading.waiting is None and reading.parallel is not None
    assert any("--metrics" in note for note in reading.notes)


# -- vLLM ---------------------------------------------------------------------------------------


def test_vllm_reading_has_kv_capacity_context_and_queue(
    make_host: Make, client: httpx.Client
) -> None:
    """vLLM: parallelism = KV blocks x block size / max_model_len; max_model_len; KV use."""
    host = make_host(server="vllm", slots=4, parallel=4, context_length=8192)
    reading = read(host, client)
    assert reading.ok and reading.kind == "vllm" and reading.installed
    assert reading.parallel is not None and reading.parallel.slots == 4
    assert "max_model_len 8192" in reading.parallel.source
    assert (reading.context, reading.running, reading.waiting) == (8192, 0, 0)
    assert reading.gpu is not None and (reading.gpu.fraction, reading.gpu.source) == (
        0.0,
        "vLLM KV cache use",
    )


def test_vllm_below_and_above_the_configured_slots(make_host: Make, client: httpx.Client) -> None:
    """Configured 4: a cache for 2 full requests reads 2, one for 8 reads 8."""
    low = read(make_host(name="low", server="vllm", slots=4, parallel=2), client)
    high = read(make_host(name="high", server="vllm", slots=4, parallel=8), client)
    assert low.parallel is not None and low.parallel.slots == 2
    assert high.parallel is not None and high.parallel.slots == 8


def test_vllm_serving_another_model_is_not_installed(make_host: Make, client: httpx.Client) -> None:
    """The configured model is not in /v1/models: installed False, a note lists what is served."""
    reading = read(make_host(server="vllm"), client, model="mistral:7b")
    assert reading.ok and reading.installed is False
    assert any(f"serving: {MODEL}" in note for note in reading.notes)


# -- Ollama -------------------------------------------------------------------------------------


def test_ollama_parallelism_is_measured_below_the_slots(
    make_host: Make, client: httpx.Client
) -> None:
    """Ollama fallen back to 1 with slots 3: 6 short requests, 1 ran at once."""
    host = make_host(server="ollama", slots=3, parallel=1)
    reading = read(host, client, measure=True)
    assert reading.ok and reading.parallel is not None
    assert (reading.parallel.slots, reading.parallel.how, reading.parallel.at_least) == (
        1,
        "measured",
        False,
    )
    assert reading.parallel.source == "1 of 6 concurrent requests ran at once"


def test_ollama_parallelism_is_measured_above_the_slots(
    make_host: Make, client: httpx.Client
) -> None:
    """OLLAMA_NUM_PARALLEL 4 with slots 2: 4 of the 4 requests ran at once (at least 4)."""
    host = make_host(server="ollama", slots=2, parallel=4)
    reading = read(host, client, measure=True)
    assert reading.parallel is not None
    assert (reading.parallel.slots, reading.parallel.at_least) == (4, True)


def test_ollama_reading_says_installed_loaded_context_and_vram(
    make_host: Make, client: httpx.Client
) -> None:
    """After measuring, the model is loaded: /api/ps gives context and size_vram."""
    host = make_host(server="ollama", slots=2, context_length=2048)
    cold = read(host, client)
    warm = read(host, client, measure=True)
    assert (cold.installed, cold.loaded, cold.parallel) == (True, False, None)
    assert (warm.loaded, warm.context) == (True, 2048)
    assert warm.vram_bytes and warm.vram_bytes > 0
    assert warm.gpu is not None and warm.gpu.source == "simulator busy slots"


def test_ollama_without_the_model_is_not_installed_and_not_measured(
    make_host: Make, client: httpx.Client
) -> None:
    """A model missing from /api/tags: installed False, nothing sent to measure."""
    host = make_host(server="ollama")
    reading = read(host, client, measure=True, model="nope:1b")
    assert (reading.installed, reading.parallel) == (False, None)
    assert host.records() == []


# -- a bare OpenAI server, and detection --------------------------------------------------------


def test_bare_openai_server_is_measured(make_host: Make, client: httpx.Client) -> None:
    """server=openai: the model list, and a parallelism measured with chat completions."""
    host = make_host(server="openai", slots=3, parallel=2)
    reading = read(host, client, measure=True)
    assert reading.ok and reading.kind == "openai" and reading.installed
    assert reading.parallel is not None and reading.parallel.slots == 2


@pytest.mark.parametrize("server", ["ollama", "llamacpp", "vllm", "openai"])
def test_auto_detects_each_server_kind(make_host: Make, client: httpx.Client, server: str) -> None:
    """``server = "auto"``: the documented endpoints tell which server it is."""
    host = make_host(server=server)
    target = Target(host.name, settings_of(host), client)
    assert detect(target) == server
    assert read(host, client).kind == server


def test_a_configured_kind_is_used_without_detecting(make_host: Make, client: httpx.Client) -> None:
    """``server = "llamacpp"`` against an Ollama: the llama.cpp probe runs and says /health 404."""
    reading = read(make_host(server="ollama"), client, server="llamacpp")
    assert not reading.ok and reading.kind == "llamacpp"
    assert reading.error is not None and "/health: HTTP 404" in reading.error


def test_probe_all_reads_every_host(make_host: Make, client: httpx.Client) -> None:
    """probe_all: one reading per host, in the order given."""
    a, b = make_host(name="a", server="llamacpp"), make_host(name="b", server="vllm")
    readings = probe_all({"a": settings_of(a), "b": settings_of(b)}, client, capacity=FAST)
    assert [(n, r.kind) for n, r in readings.items()] == [("a", "llamacpp"), ("b", "vllm")]


# -- bad input: one line each -------------------------------------------------------------------


class _Html(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!DOCTYPE html>\n<html><body><h1>Welcome to nginx!</h1></body></html>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def html_url() -> Iterator[str]:
    """A real HTTP server answering an HTML page to every GET."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def host_at(url: str, **update: Any) -> HostSettings:
    return HostSettings(base_url=url, model=MODEL, slots=2, kinds=("text",)).model_copy(
        update=update
    )


def test_an_unreachable_host_is_one_line_naming_host_and_url(client: httpx.Client) -> None:
    """A closed port: the reading's error names the host, the URL and the refusal."""
    url = f"http://127.0.0.1:{free_port()}"
    reading = probe("surtr", host_at(url), client, capacity=FAST)
    assert not reading.ok and reading.kind is None
    assert reading.error == (
        f"host surtr: GET {url}/api/version: cannot connect ([Errno 111] Connection refused)"
    )


def test_a_server_answering_html_is_no_known_server(html_url: str, client: httpx.Client) -> None:
    """HTML on every path: "no Ollama, llama.cpp, vLLM or OpenAI API", quoting what came."""
    reading = probe("skadi", host_at(html_url), client, capacity=FAST)
    assert reading.error is not None and "\n" not in reading.error
    assert reading.error.startswith(
        f"host skadi: no Ollama, llama.cpp, vLLM or OpenAI API at {html_url}"
        f" (GET {html_url}/api/version: not JSON: '<!DOCTYPE html> <html><body>"
    )


def test_html_where_llamacpp_json_is_expected_names_the_endpoint(
    html_url: str, client: httpx.Client
) -> None:
    """server=llamacpp answering HTML: the error names /props and says it is not JSON."""
    reading = probe("skadi", host_at(html_url, server="llamacpp"), client, capacity=FAST)
    assert reading.error is not None
    assert reading.error.startswith(f"host skadi: GET {html_url}/props: not JSON: '<!DOCTYPE")


def test_a_probe_that_times_out_is_one_line(silent_url: str, client: httpx.Client) -> None:
    """A server that never answers: "no answer within 0.3s", after one timeout, not three."""
    quick = CapacitySettings(timeout_s=0.3)
    reading = probe("fenrir", host_at(silent_url), client, capacity=quick)
    assert reading.error == f"host fenrir: GET {silent_url}/api/version: no answer within 0.3s"


def test_garbage_metrics_are_a_note_and_the_rest_is_read(
    make_host: Make, client: httpx.Client
) -> None:
    """llama.cpp whose /metrics is not Prometheus text: the slots are still read, with a note."""
    host = make_host(server="llamacpp", slots=2)
    with httpx.Client(transport=_GarbageMetrics(httpx.HTTPTransport())) as garbled:
        reading = probe(host.name, settings_of(host), garbled, capacity=FAST, local_gpu=False)
    assert reading.ok and reading.parallel is not None and reading.parallel.slots == 2
    assert reading.waiting is None
    assert any("/metrics: not Prometheus text" in note for note in reading.notes)


class _GarbageMetrics(httpx.BaseTransport):
    """Passes requests to the real server but garbles the body of /metrics (an edge: a proxy)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":
            return httpx.Response(200, text="<html>oops</html>\n{not: metrics}\n")
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


# -- a real llama-server (SmolLM2-135M on CPU) --------------------------------------------------

real_server = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    """One real llama-server started with --parallel 2."""
    with LlamaServer(name="fenrir-chat", parallel=2, ctx=512) as server:
        yield server


@pytest.mark.llm
@real_server
def test_a_real_llama_server_is_detected_and_read(llama: LlamaServer, client: httpx.Client) -> None:
    """Auto-detected as llama.cpp: 2 slots from /slots, n_ctx 512, its alias, an idle queue."""
    host = llama.host_settings().model_copy(update={"slots": 3})
    reading = probe("fenrir-chat", host, client, capacity=FAST, local_gpu=False)
    assert reading.ok and reading.kind == "llamacpp", reading
    assert reading.parallel is not None and reading.parallel.slots == 2
    assert (reading.model, reading.context, reading.waiting) == (MODEL_ALIAS, 512, 0)
    check = check_parallelism("fenrir-chat", host, reading)
    assert not check.ok and check.name == "parallelism fenrir-chat"
    assert check.line.startswith("server runs 2 (reported: /slots lists 2), slots = 3:")
    assert check.fix is not None and check.fix.startswith("set hosts.fenrir-chat.slots = 2")


@pytest.mark.llm
@real_server
def test_measuring_a_real_llama_server_finds_its_two_slots(
    llama: LlamaServer, client: httpx.Client
) -> None:
    """Measured as a bare OpenAI server (6 short completions at once): 2 ran at once."""
    host = llama.host_settings().model_copy(update={"slots": 3, "server": "openai"})
    reading = probe("fenrir-chat", host, client, capacity=FAST, measure=True, local_gpu=False)
    assert reading.parallel is not None, reading.notes
    assert (reading.parallel.slots, reading.parallel.how) == (2, "measured")
