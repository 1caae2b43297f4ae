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
from yggcelery.testing.waiting import wait_until

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
    """A non-streamed chat gives the answer, token counts, durations; cut by num_predict: length."""
    reply = olm.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "Fix the flaky login test please"}],
        options={"num_predict": 50},
    )
    assert reply.done and reply.done_reason == "length"
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
    """A chat completion has the answer and usage; cut by max_tokens, finish_reason is length."""
    reply = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Summarise the design"}], max_tokens=30
    )
    assert reply.object == "chat.completion" and reply.choices[0].finish_reason == "length"
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
        json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": False},
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


# -- the calls the official clients make beyond chat (issue 13) --------------------------------


def test_ollama_show_gives_details_context_and_capabilities(olm: ollama.Client) -> None:
    """``show`` answers the model's details, its GGUF context length and capabilities."""
    shown = olm.show(MODEL)
    assert shown.details is not None and shown.details.family == "llama"
    assert shown.modelinfo is not None and shown.modelinfo["llama.context_length"] == 8192
    assert shown.capabilities == ["completion"]


def test_ollama_show_of_an_unknown_model_is_404(olm: ollama.Client) -> None:
    """``show`` of a model the host lacks is ResponseError 404 with Ollama's wording."""
    with pytest.raises(ollama.ResponseError) as caught:
        olm.show("nope:1b")
    assert (caught.value.status_code, caught.value.error) == (404, "model 'nope:1b' not found")


def test_ollama_embed_gives_one_unit_vector_per_input(olm: ollama.Client) -> None:
    """``embed`` returns a normalised vector per text, the same one for the same text."""
    one = olm.embed(model=MODEL, input="hello")
    two = olm.embed(model=MODEL, input=["hello", "world"])
    assert len(one.embeddings) == 1 and len(two.embeddings) == 2
    assert list(one.embeddings[0]) == list(two.embeddings[0]) != list(two.embeddings[1])
    assert sum(v * v for v in one.embeddings[0]) == pytest.approx(1.0)


def test_ollama_embed_without_input_only_loads(host: SimHost, olm: ollama.Client) -> None:
    """``embed`` of nothing is an empty list (Ollama's load), and the model shows in ``ps``."""
    assert list(olm.embed(model=MODEL, input=[]).embeddings) == []
    assert [m.model for m in olm.ps().models] == [MODEL]


def test_ollama_chat_without_messages_loads_the_model_without_a_slot(
    host: SimHost, olm: ollama.Client
) -> None:
    """``chat`` with no messages is Ollama's load reply: empty, done_reason load, no decoding."""
    reply = olm.chat(model=MODEL)
    assert (reply.done, reply.done_reason, reply.message.content) == (True, "load", "")
    assert host.status()["served"] == 0 and host.records()[0]["slot"] is None
    assert [m.model for m in olm.ps().models] == [MODEL]


def test_ollama_generate_without_prompt_loads_and_keep_alive_0_unloads(
    olm: ollama.Client,
) -> None:
    """A bare ``generate`` loads (done_reason load); with keep_alive=0 it unloads."""
    loaded = olm.generate(model=MODEL)
    listed = [m.model for m in olm.ps().models]
    unloaded = olm.generate(model=MODEL, keep_alive=0)
    assert (loaded.done_reason, loaded.response, listed) == ("load", "", [MODEL])
    assert unloaded.done_reason == "unload" and olm.ps().models == []


def test_ollama_chat_with_messages_not_a_list_is_400(host: SimHost) -> None:
    """``messages: "hi"`` is Go's unmarshal error, 400 (raw HTTP: the client cannot send it)."""
    body = {"model": MODEL, "messages": "hi"}
    response = httpx.post(f"{host.url}/api/chat", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "error": "json: cannot unmarshal string into Go struct field ChatRequest.messages"
        " of type []api.Message"
    }
    assert host.status()["served"] == 0


def test_ollama_bad_keep_alive_is_400_with_gos_words(olm: ollama.Client) -> None:
    """A keep_alive that is no Go duration is 400 ``time: invalid duration``."""
    with pytest.raises(ollama.ResponseError) as caught:
        olm.generate(model=MODEL, prompt="x", keep_alive="soon")
    assert (caught.value.status_code, caught.value.error) == (400, 'time: invalid duration "soon"')


def test_ollama_done_reason_is_stop_when_the_answer_ends_before_the_limit(
    olm: ollama.Client,
) -> None:
    """A limit above the answer's natural length (200 tokens) is not reached: stop, 200 tokens."""
    reply = olm.generate(model=MODEL, prompt="x", options={"num_predict": 500})
    streamed = list(olm.generate(model=MODEL, prompt="x", options={"num_predict": 5}, stream=True))
    assert (reply.done_reason, reply.eval_count) == ("stop", 200)
    assert (streamed[-1].done_reason, streamed[-1].eval_count) == ("length", 5)


def test_ollama_ps_keeps_the_model_for_keep_alive_after_the_last_request(
    olm: ollama.Client,
) -> None:
    """After a chat, ``ps`` lists the model with its context until keep_alive runs out."""
    olm.chat(model=MODEL, messages=[{"role": "user", "content": "x"}], keep_alive=0.5)
    (entry,) = olm.ps().models
    assert (entry.model, entry.context_length, entry.size_vram) == (MODEL, 8192, entry.size)
    assert entry.expires_at is not None
    wait_until(lambda: not olm.ps().models, timeout_s=10, what="model unloaded after keep_alive")


def test_ollama_unknown_path_is_a_json_404(host: SimHost) -> None:
    """A path Ollama lacks is 404 with a JSON error body, not plain text."""
    response = httpx.get(f"{host.url}/api/nope")
    assert (response.status_code, response.json()) == (404, {"error": "404 page not found"})


def test_openai_retrieves_the_model(oai: openai.OpenAI) -> None:
    """``models.retrieve`` of the host's model answers it; another is NotFoundError."""
    assert oai.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as caught:
        oai.models.retrieve("gpt-9")
    assert caught.value.code == "model_not_found"


def test_openai_text_completion_whole_and_streamed(oai: openai.OpenAI) -> None:
    """``completions.create`` answers text_completion; cut by max_tokens: length; streams too."""
    whole = oai.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=7)
    pieces = list(
        oai.completions.create(
            model=MODEL,
            prompt="Once upon a time",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert whole.object == "text_completion" and whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 7
    text = "".join(p.choices[0].text for p in pieces if p.choices)
    assert text == whole.choices[0].text == f"[{MODEL}] simulated answer to: Once upon a time"
    assert pieces[-2].choices[0].finish_reason == "stop"
    assert pieces[-1].usage is not None and pieces[-1].usage.completion_tokens == 200


def test_openai_text_completion_without_prompt_is_400(oai: openai.OpenAI) -> None:
    """A completion without a prompt is BadRequestError, missing_required_parameter."""
    with pytest.raises(openai.BadRequestError) as caught:
        oai.completions.create(model=MODEL, prompt=None)  # type: ignore[call-overload]
    assert caught.value.code == "missing_required_parameter"


def test_openai_unknown_endpoint_is_not_found_with_openais_body(oai: openai.OpenAI) -> None:
    """An endpoint the host lacks (embeddings) is NotFoundError with "Invalid URL ..."."""
    with pytest.raises(openai.NotFoundError) as caught:
        oai.embeddings.create(model=MODEL, input="x")
    assert caught.value.message.endswith("Invalid URL (POST /v1/embeddings)")
