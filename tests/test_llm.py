"""The model client against real HTTP servers on loopback (the scripted FakeModelServer)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from yggcelery.errors import (
    HostBusy,
    HostError,
    HostRejected,
    HostUnavailable,
    PermanentError,
    TransientError,
)
from yggcelery.llm import AsyncLLMClient, Completion, LLMClient, TaskTags, get_client
from yggcelery.llm.fake import COMPLETION_TOKENS, PROMPT_TOKENS, FakeModelServer, Reply
from yggcelery.llm.wire import ModelRequest, build_request, parse_stream
from yggcelery.settings import Settings, load_settings
from yggcelery.testing.redis import free_port

PROMPT = "What is the capital of France?"


def make_settings(url: str, *, dialect: str = "ollama", **host: Any) -> Settings:
    """Settings with one host, ``h1``, at ``url``."""
    fields = {"base_url": url, "dialect": dialect, "model": "m1", "slots": 1, "kinds": ["text"]}
    return load_settings(hosts={"h1": fields | host}, timeouts={"connect_s": 2, "read_s": 5})


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as fake:
        yield fake


@pytest.fixture
def ollama(server: FakeModelServer) -> Iterator[LLMClient]:
    with LLMClient(make_settings(server.url)) as client:
        yield client


def test_ollama_dialect_returns_text_tokens_and_timings(
    server: FakeModelServer, ollama: LLMClient
) -> None:
    """An Ollama host is asked on /api/chat, unstreamed, and its ns timings become seconds."""
    answer = ollama.complete("h1", PROMPT, max_tokens=32, temperature=0.0)
    assert (answer.text, answer.host, answer.model) == (server.text, "h1", "m1")
    assert (answer.prompt_tokens, answer.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert (answer.load_s, answer.prompt_eval_s, answer.eval_s) == (0.001, 0.02, 0.3)
    assert answer.total_s > 0 and not answer.via_cloud and answer.cost_usd == 0
    sent = server.requests[0]
    assert sent.path == "/api/chat"
    assert sent.body == {
        "model": "m1",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": False,
        "options": {"num_predict": 32, "temperature": 0.0},
    }


def test_openai_dialect_sends_bearer_key_from_the_named_env_var(
    server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OpenAI host is asked on /v1/chat/completions with the key from ``api_key_env``."""
    monkeypatch.setenv("H1_KEY", "k-123")
    settings = make_settings(server.url, dialect="openai", api_key_env="H1_KEY")
    with LLMClient(settings) as client:
        answer = client.complete("h1", PROMPT, max_tokens=16, temperature=0.5)
    assert answer.text == server.text
    assert (answer.prompt_tokens, answer.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert (answer.load_s, answer.prompt_eval_s, answer.eval_s) == (None, None, None)
    sent = server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer k-123"
    assert (sent.body["max_tokens"], sent.body["temperature"], sent.body["stream"]) == (
        16,
        0.5,
        False,
    )


def test_no_authorization_header_without_api_key_env(
    server: FakeModelServer, ollama: LLMClient
) -> None:
    """A host without ``api_key_env`` gets no Authorization header at all."""
    ollama.complete("h1", PROMPT)
    assert "Authorization" not in server.requests[0].headers
    assert "options" in server.requests[0].body and server.requests[0].body["options"] == {}


def test_task_tags_travel_as_headers(server: FakeModelServer, ollama: LLMClient) -> None:
    """TaskTags become X-Ygg-* headers; unset tags are not sent."""
    ollama.complete("h1", PROMPT, tags=TaskTags(bead="bd-7", priority=0, service_s=2.5))
    headers = server.requests[0].headers
    assert (headers["X-Ygg-Bead"], headers["X-Ygg-Priority"]) == ("bd-7", "0")
    assert headers["X-Ygg-Service-S"] == "2.5"
    assert "X-Ygg-Kind" not in headers


@pytest.mark.parametrize(
    ("status", "error", "transient"),
    [(503, HostBusy, True), (429, HostBusy, True), (500, HostUnavailable, True),
     (502, HostUnavailable, True), (400, HostRejected, False), (401, HostRejected, False)],
)  # fmt: skip
def test_error_statuses_map_to_the_error_tree(
    server: FakeModelServer, ollama: LLMClient, status: int, error: type[HostError], transient: bool
) -> None:
    """Each HTTP error status maps to one error class, naming host, status and server text."""
    server.script(Reply(status=status, body={"error": "the server says no"}))
    with pytest.raises(error) as caught:
        ollama.complete("h1", PROMPT)
    assert isinstance(caught.value, TransientError) is transient
    assert isinstance(caught.value, PermanentError) is not transient
    assert caught.value.status == status
    assert str(caught.value).startswith("host h1: ")
    assert f"HTTP {status}" in str(caught.value) and "the server says no" in str(caught.value)


def test_unknown_model_is_rejected_with_openai_error_text(server: FakeModelServer) -> None:
    """A 404 in OpenAI's error shape becomes HostRejected quoting error.message."""
    body = {"error": {"message": "model 'nope' not found", "type": "invalid_request_error"}}
    server.script(Reply(status=404, body=body))
    pattern = r"host h1: HTTP 404 .*model 'nope' not found"
    with (
        LLMClient(make_settings(server.url, dialect="openai")) as client,
        pytest.raises(HostRejected, match=pattern),
    ):
        client.complete("h1", PROMPT)


def test_connection_refused_is_host_unavailable() -> None:
    """Nothing listening on the host's port: HostUnavailable naming the host and the URL."""
    url = f"http://127.0.0.1:{free_port()}"
    pattern = rf"host h1: cannot reach {url}/api/chat \(ConnectError"
    with LLMClient(make_settings(url)) as client, pytest.raises(HostUnavailable, match=pattern):
        client.complete("h1", PROMPT)


def test_read_timeout_is_host_unavailable(server: FakeModelServer) -> None:
    """An answer slower than read_s: HostUnavailable saying how long it waited."""
    server.script(Reply(delay_s=3.0))
    settings = make_settings(server.url)
    settings = load_settings(hosts=settings.hosts, timeouts={"connect_s": 2, "read_s": 0.2})
    with LLMClient(settings) as client, pytest.raises(HostUnavailable, match=r"within 0\.2s"):
        client.complete("h1", PROMPT)


def test_unreadable_answer_is_transient(server: FakeModelServer, ollama: LLMClient) -> None:
    """A 200 whose body is not the dialect's JSON: HostUnavailable, not a crash."""
    server.script(Reply(body="<html>proxy error</html>"), Reply(body={"unexpected": 1}))
    for _ in range(2):
        with pytest.raises(HostUnavailable, match=r"HTTP 200 .*unreadable answer"):
            ollama.complete("h1", PROMPT)


def test_error_text_is_trimmed_and_never_quotes_the_prompt(
    server: FakeModelServer, ollama: LLMClient
) -> None:
    """Server text that echoes the prompt is cut out; long text is trimmed to one short line."""
    secret_prompt = "confidential issue text " * 3
    server.script(Reply(status=400, body={"error": f"bad prompt: {secret_prompt}" + "x" * 500}))
    with pytest.raises(HostRejected) as caught:
        ollama.complete("h1", secret_prompt)
    message = str(caught.value)
    assert "confidential" not in message and "<prompt>" in message
    assert len(message) < 400 and message.endswith("...")


def test_the_client_sends_the_prompt_it_is_given_whole(server: FakeModelServer) -> None:
    """The client never cuts a prompt, even one over the host's max_prompt_chars: the work
    path's prompt (work/prompt.py) is the one place a prompt is cut, to its target's limit."""
    with LLMClient(make_settings(server.url, max_prompt_chars=300)) as client:
        client.complete("h1", "a" * 1000)
    assert server.requests[0].body["messages"][0]["content"] == "a" * 1000


def test_client_has_explicit_timeouts() -> None:
    """The httpx client uses connect_s and read_s from the settings."""
    with LLMClient(make_settings("http://127.0.0.1:9")) as client:
        assert (client.http.timeout.connect, client.http.timeout.read) == (2, 5)


def test_get_client_is_one_per_process_and_new_after_fork() -> None:
    """get_client returns the same client in a process, and a fresh one in a forked child."""
    settings = make_settings("http://127.0.0.1:9")
    parent = get_client(settings)
    assert get_client(settings) is parent
    pid = os.fork()
    if pid == 0:  # the child: exit 0 when it got its own client
        os._exit(0 if get_client(settings) is not parent else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert get_client(settings) is parent


def test_completion_to_dict_is_json_safe_and_round_trips(ollama: LLMClient) -> None:
    """A Completion survives JSON (a Celery result) unchanged."""
    answer = ollama.complete("h1", PROMPT)
    assert Completion.from_dict(json.loads(json.dumps(answer.to_dict()))) == answer
    assert PROMPT not in repr(answer)


def test_async_client_speaks_both_dialects_and_maps_errors(server: FakeModelServer) -> None:
    """AsyncLLMClient gives the same completions and the same errors as the sync client."""

    async def run(dialect: str) -> tuple[Completion, HostBusy]:
        async with AsyncLLMClient(make_settings(server.url, dialect=dialect)) as client:
            answer = await client.complete("h1", PROMPT, tags=TaskTags(kind="text"))
            server.script(Reply(status=503, body={"error": "server busy"}))
            try:
                await client.complete("h1", PROMPT)
            except HostBusy as exc:
                return answer, exc
            raise AssertionError("no HostBusy")

    for dialect, path in (("ollama", "/api/chat"), ("openai", "/v1/chat/completions")):
        answer, busy = asyncio.run(run(dialect))
        assert (answer.text, answer.completion_tokens) == (server.text, COMPLETION_TOKENS)
        assert (
            server.requests[-1].path == path and server.requests[-2].headers["X-Ygg-Kind"] == "text"
        )
        assert busy.status == 503 and "server busy" in str(busy)


def test_injected_transport_is_used() -> None:
    """``transport=`` replaces the network (httpx's MockTransport stands in for a server here)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "mock busy"})

    settings = make_settings("http://h1.invalid")
    transport = httpx.MockTransport(handler)
    with LLMClient(settings, transport=transport) as client, pytest.raises(HostBusy, match="mock"):
        client.complete("h1", PROMPT)


def streamed_request(dialect: str) -> ModelRequest:
    host = make_settings("http://h1.invalid", dialect=dialect).hosts["h1"]
    return build_request("h1", host, PROMPT, stream=True)


def test_a_streamed_answer_is_put_back_together_in_both_dialects() -> None:
    """Ollama's NDJSON pieces and OpenAI's server-sent events give the text of every piece
    and the token counts and timings of the last ones; the request asks for the usage."""
    ollama = [json.dumps({"message": {"content": "Par"}, "done": False}),
              json.dumps({"message": {"content": "is."}, "done": False}),
              json.dumps({"message": {"content": ""}, "done": True, "prompt_eval_count": 7,
                          "eval_count": 2, "eval_duration": 500_000_000})]  # fmt: skip
    answer = parse_stream(streamed_request("ollama"), ollama, total_s=1.0)
    assert (answer.text, answer.prompt_tokens, answer.completion_tokens) == ("Paris.", 7, 2)
    assert answer.eval_s == 0.5

    request = streamed_request("openai")
    assert request.body["stream"] is True and request.body["stream_options"] == {
        "include_usage": True
    }
    chunk = lambda text: json.dumps({"choices": [{"delta": {"content": text}}]})  # noqa: E731
    usage = {"prompt_tokens": 7, "completion_tokens": 2}
    events = ["data: " + chunk("Par"), "", "data: " + chunk("is."), "",
              "data: " + json.dumps({"choices": [], "usage": usage,
                                     "timings": {"predicted_ms": 250}}),
              "data: [DONE]"]  # fmt: skip
    answer = parse_stream(request, events, total_s=1.0)
    assert (answer.text, answer.prompt_tokens, answer.completion_tokens) == ("Paris.", 7, 2)
    assert answer.eval_s == 0.25


@pytest.mark.parametrize(
    ("dialect", "lines", "why"),
    [
        ("openai", ['data: {"choices": [{"delta": {"content": "Pa"}}]}'], "before [DONE]"),
        ("openai", ['data: {"error": {"message": "oom"}}', "data: [DONE]"], "oom"),
        ("ollama", ['{"message": {"content": "Pa"}, "done": false}'], "before its done line"),
        ("ollama", ['{"error": "model unloaded"}'], "model unloaded"),
        ("ollama", ["<html>"], "JSONDecodeError"),
    ],
)  # fmt: skip
def test_a_stream_cut_short_or_failing_is_host_unavailable(
    dialect: str, lines: list[str], why: str
) -> None:
    """A stream that ends early, reports an error or is not JSON: one HostUnavailable naming
    the URL and what was wrong, never a half answer."""
    with pytest.raises(HostUnavailable, match="unreadable streamed answer") as caught:
        parse_stream(streamed_request(dialect), lines, total_s=1.0)
    assert why in str(caught.value) and "h1.invalid" in str(caught.value)


def test_a_server_that_ignores_stream_is_read_as_a_whole_answer() -> None:
    """`application/json` instead of a stream: the document is the whole answer."""
    whole = json.dumps({"choices": [{"message": {"content": "Paris."}}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 2}})  # fmt: skip
    answer = parse_stream(streamed_request("openai"), [whole], total_s=1.0,
                          content_type="application/json; charset=utf-8")  # fmt: skip
    assert (answer.text, answer.completion_tokens) == ("Paris.", 2)
