"""The simulator speaks Ollama and OpenAI well enough for their official Python clients.

Real HTTP servers on loopback free ports, the real ``ollama`` and ``openai`` clients.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from yggcelery.sim import SimFleet, SimHost, SimHostConfig
from yggcelery.sim import ollama as ollama_dialect

MODEL = "llama3.1:8b"


@pytest.fixture
def host() -> Iterator[SimHost]:
    """One simulated host, 2 slots, a "6 s" default answer taking 6 ms."""
    config = SimHostConfig(name="fenrir", model=MODEL, slots=2, time_scale=0.001)
    with SimFleet([config]) as fleet:
        yield fleet["fenrir"]


@pytest.fixture
def oai(host: SimHost) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{host.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture
def olm(host: SimHost) -> Iterator[ollama.Client]:
    with ollama.Client(host=host.url) as client:
        yield client


def test_ollama_lists_the_hosts_model(olm: ollama.Client) -> None:
    """``/api/tags`` lists the host's one model with its details."""
    models = olm.list().models
    assert [m.model for m in models] == [MODEL]
    assert models[0].details is not None and models[0].details.format == "gguf"


def test_ollama_chat_answers_with_counts_and_durations(olm: ollama.Client) -> None:
    """A non-streamed chat gives the model's answer, token counts and nanosecond durations."""
    reply = olm.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "Fix the flaky login test please"}],
        options={"num_predict": 50},
    )
    assert reply.done and reply.done_reason == "stop"
    content = reply.message.content or ""
    assert MODEL in content and "Fix the flaky login" in content
    assert reply.eval_count == 50 and (reply.prompt_eval_count or 0) >= 1
    assert reply.prompt_eval_duration == 2_000_000_000  # the text kind's 2 s prefill
    assert reply.eval_duration == 1_000_000_000  # 50 tokens x 0.02 s
    assert (reply.total_duration or 0) >= 3_000_000_000


def test_ollama_streams_chat_as_ndjson_ending_with_done(olm: ollama.Client) -> None:
    """A streamed chat arrives in pieces; only the last one is done and carries the counters."""
    parts = list(
        olm.chat(model=MODEL, messages=[{"role": "user", "content": "hello there"}], stream=True)
    )
    assert len(parts) > 2
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    text = "".join(p.message.content or "" for p in parts)
    assert text == f"[{MODEL}] simulated answer to: hello there"
    assert parts[-1].eval_count == 200


def test_ollama_generate_streams_and_not(olm: ollama.Client) -> None:
    """``/api/generate`` answers whole with ``stream=False`` and in pieces with ``stream=True``."""
    whole = olm.generate(model=MODEL, prompt="why is the sky blue", stream=False)
    pieces = list(olm.generate(model=MODEL, prompt="why is the sky blue", stream=True))
    assert whole.response == "".join(p.response or "" for p in pieces)
    assert "why is the sky blue" in whole.response
    assert whole.context and pieces[-1].done


def test_ollama_version_and_ps(host: SimHost, olm: ollama.Client) -> None:
    """``/api/version`` reports a version and ``/api/ps`` a list of loaded models."""
    assert httpx.get(f"{host.url}/api/version").json() == {"version": ollama_dialect.VERSION}
    assert httpx.get(f"{host.url}/api/ps").json() == {"models": []}
    assert olm.ps().models == []


def test_ollama_client_raises_not_found_for_an_unknown_model(olm: ollama.Client) -> None:
    """An unknown model is a 404 ResponseError with Ollama's wording."""
    with pytest.raises(ollama.ResponseError) as caught:
        olm.chat(model="nope:1b", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404
    assert caught.value.error == "model 'nope:1b' not found"


def test_openai_chat_completion_with_usage(oai: openai.OpenAI) -> None:
    """A non-streamed chat completion has the answer, finish_reason and token usage."""
    reply = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Summarise the design"}], max_tokens=30
    )
    assert reply.object == "chat.completion" and reply.choices[0].finish_reason == "stop"
    assert "Summarise the design" in (reply.choices[0].message.content or "")
    assert reply.usage is not None and reply.usage.completion_tokens == 30
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 30


def test_openai_streams_chunks_then_usage_then_done(oai: openai.OpenAI) -> None:
    """A streamed completion sends role, content pieces, a stop chunk, then usage if asked."""
    chunks = list(
        oai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"[{MODEL}] simulated answer to: hi there"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 200


def test_openai_sse_stream_ends_with_done_marker(host: SimHost) -> None:
    """The raw SSE stream is ``data: {...}`` events closed by ``data: [DONE]``."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True}
    response = httpx.post(f"{host.url}/v1/chat/completions", json=body)
    events = [line for line in response.text.split("\n\n") if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: {") for e in events[:-1])


def test_openai_lists_models(oai: openai.OpenAI) -> None:
    """``/v1/models`` lists the host's model."""
    assert [m.id for m in oai.models.list()] == [MODEL]


def test_openai_client_raises_not_found_for_an_unknown_model(oai: openai.OpenAI) -> None:
    """An unknown model is NotFoundError (404) with OpenAI's model_not_found body."""
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert caught.value.message.endswith(
        "The model `gpt-9` does not exist or you do not have access to it."
    )


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/chat", b"", 400, "missing request body"),
        ("/api/chat", b"{bad", 400,
         "invalid character 'b' looking for beginning of object key string"),
        ("/api/chat", b"not json", 400, "invalid character 'o' in literal null (expecting 'u')"),
        ("/api/chat", b'{"model": "x",', 400, "unexpected EOF"),
        ("/api/chat", b'{"model": "x" "y"}', 400,
         "invalid character '\"' after object key:value pair"),
        ("/api/chat", b"[1]", 400,
         "json: cannot unmarshal array into Go value of type api.ChatRequest"),
        ("/api/chat", b'{"model": 7}', 400,
         "json: cannot unmarshal number into Go struct field ChatRequest.model of type string"),
        ("/api/chat", b"{}", 400, "model is required"),
        ("/api/chat", b'{"model": "other:7b"}', 404, "model 'other:7b' not found"),
        ("/api/generate", b"{}", 404, "model '' not found"),
        ("/api/generate", b'{"model": "other"}', 404, "model 'other' not found"),
    ],
)  # fmt: skip
def test_ollama_bad_input_gets_ollamas_status_and_body(
    host: SimHost, path: str, body: bytes, status: int, error: str
) -> None:
    """Malformed JSON, a missing or unknown model: Ollama's status and ``{"error": ...}`` body."""
    response = httpx.post(f"{host.url}{path}", content=body)
    assert (response.status_code, response.json()) == (status, {"error": error})


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (b"{bad", 400, None, "We could not parse the JSON body of your request."),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, None,
         "you must provide a model parameter"),
        (b'{"model": "llama3.1:8b"}', 400, "missing_required_parameter",
         "Missing required parameter: 'messages'."),
        (b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}', 404,
         "model_not_found", "The model `gpt-9` does not exist or you do not have access to it."),
    ],
)  # fmt: skip
def test_openai_bad_input_gets_openais_status_and_body(
    host: SimHost, body: bytes, status: int, code: str | None, message: str
) -> None:
    """Malformed JSON, a missing or unknown model: OpenAI's status and error object."""
    response = httpx.post(
        f"{host.url}/v1/chat/completions",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    error = response.json()["error"]
    assert response.status_code == status
    assert error["message"].startswith(message)
    assert (error["type"], error["code"]) == ("invalid_request_error", code)


def test_a_model_name_without_tag_means_latest() -> None:
    """``llama3`` names ``llama3:latest``, case-insensitively, but not ``llama3:8b``."""
    assert ollama_dialect.same_model("Llama3", "llama3:latest")
    assert not ollama_dialect.same_model("llama3", "llama3:8b")


def test_bad_requests_are_recorded_with_their_status(host: SimHost) -> None:
    """Every model request is a record, refused ones included, with the X-Ygg headers."""
    httpx.post(f"{host.url}/api/chat", content=b"{}", headers={"X-Ygg-Bead": "yg-1"})
    httpx.post(
        f"{host.url}/api/chat",
        json={"model": MODEL, "messages": [], "stream": False},
        headers={"X-Ygg-Bead": "yg-2", "X-Ygg-Priority": "1", "X-Ygg-Kind": "code"},
    )
    rows = httpx.get(f"{host.url}/sim/records").json()
    assert [(r["bead"], r["status"], r["slot"]) for r in rows] == [
        ("yg-1", 400, None),
        ("yg-2", 200, 0),
    ]
    assert (rows[1]["priority"], rows[1]["kind"], rows[1]["host"]) == (1, "code", "fenrir")
    assert rows[1]["arrived"] <= rows[1]["started"] <= rows[1]["finished"]
    assert json.loads(json.dumps(rows)) == rows
