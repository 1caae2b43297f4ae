"""The Ollama dialect: request parsing, answer shapes and error bodies, as Ollama sends them.

Answers and refusals follow ``server/routes.go`` of current Ollama (0.12-0.13 era):

- empty body: 400 ``missing request body``; malformed JSON or a field of the wrong type
  (``"messages": "hi"``): 400 with Go's ``encoding/json`` message (:mod:`.gojson`);
- ``/api/chat`` without a model: 400 ``model is required``; ``/api/generate`` without one: 404
  ``model '' not found`` (its handler parses the name first);
- unknown model: 404 ``model 'x' not found``. Older Ollama (before 0.4) said
  ``model "x" not found, try pulling it first``; the status, which clients act on, is the same;
- a chat without messages or a generate without a prompt only loads the model: 200 with an
  empty answer and ``done_reason: "load"`` (``"unload"`` with ``keep_alive: 0``), no decoding;
- an answer cut by ``num_predict`` ends with ``done_reason: "length"``, else ``"stop"``;
- queue full: 503 ``server busy, please try again.  maximum pending requests exceeded``
  (two spaces, as ``server/sched.go`` has it).
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any

from yggcelery.sim.gojson import GoDecodeError, check_field, decode_object, duration_s
from yggcelery.sim.protocol import Action, ApiError, SimRequest, digest, non_negative, positive_int

VERSION = "0.12.6"
BUSY = "server busy, please try again.  maximum pending requests exceeded"
#: What Ollama answers when its runner dies mid-request (``llm/server.go``).
RUNNER_STOPPED = (
    "model runner has unexpectedly stopped, this may be due to resource limitations or an "
    "internal error, check ollama server logs for details"
)
MODEL_SIZE_BYTES = 4_920_753_328
#: Length of the simulated embedding vectors.
EMBEDDING_LENGTH = 64


def error(status: int, message: str) -> ApiError:
    """An Ollama error answer: ``{"error": message}``."""
    return ApiError(status, {"error": message})


def same_model(asked: str, served: str) -> bool:
    """Whether ``asked`` names ``served`` (case-insensitive, a missing tag means ``:latest``)."""

    def norm(name: str) -> str:
        name = name.strip().lower()
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return norm(asked) == norm(served)


def parse_chat(raw: bytes, served_model: str) -> SimRequest:
    """A ``POST /api/chat`` body, or the :class:`ApiError` Ollama would answer."""
    body = _decode(raw, "ChatRequest", messages="[]api.Message")
    model = body.get("model") or ""
    if not model:
        raise error(400, "model is required")
    _check_model(model, served_model)
    messages = body.get("messages") or []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    prompt = str((users or [{}])[-1].get("content") or "")
    return _request(body, model, prompt, empty=not messages)


def parse_generate(raw: bytes, served_model: str) -> SimRequest:
    """A ``POST /api/generate`` body, or the :class:`ApiError` Ollama would answer."""
    body = _decode(raw, "GenerateRequest", prompt="string")
    model = body.get("model") or ""
    _check_model(model, served_model)
    prompt = body.get("prompt") or ""
    return _request(body, model, prompt, empty=not prompt)


def parse_show(raw: bytes, served_model: str) -> str:
    """The model a ``POST /api/show`` asks about, or the :class:`ApiError` Ollama would answer."""
    body = _decode(raw, "ShowRequest", model="string", name="string")
    model = body.get("model") or body.get("name") or ""
    if not model:
        raise error(400, "model is required")
    _check_model(model, served_model)
    return str(model)


def parse_embed(raw: bytes, served_model: str) -> tuple[str, list[str], float | None]:
    """A ``POST /api/embed`` body: the model, the texts, and its keep_alive (real seconds)."""
    body = _decode(raw, "EmbedRequest", model="string")
    model = str(body.get("model") or "")
    _check_model(model, served_model)
    given = body.get("input")
    if isinstance(given, str):
        texts = [given] if given else []
    elif isinstance(given, list) and all(isinstance(t, str) for t in given):
        texts = list(given)
    elif given is None:
        texts = []
    else:
        raise error(400, "invalid input type")
    return model, texts, _keep_alive(body)


def chunk(req: SimRequest, text: str, *, chat: bool, created_at: str) -> dict[str, Any]:
    """One streamed piece of an answer (``done: false``)."""
    out: dict[str, Any] = {"model": req.model, "created_at": created_at}
    if chat:
        out["message"] = {"role": "assistant", "content": text}
    else:
        out["response"] = text
    out["done"] = False
    return out


def final(
    req: SimRequest,
    text: str,
    *,
    chat: bool,
    created_at: str,
    durations_ns: dict[str, int],
    prompt_tokens: int,
    eval_tokens: int,
    done_reason: str = "stop",
) -> dict[str, Any]:
    """The last object of an answer (``done: true``) with Ollama's counters and durations."""
    out = chunk(req, text, chat=chat, created_at=created_at)
    out["done"] = True
    out["done_reason"] = done_reason
    if not chat:
        out["context"] = list(range(1, min(prompt_tokens + eval_tokens, 64) + 1))
    out.update(
        total_duration=durations_ns["total"],
        load_duration=durations_ns["load"],
        prompt_eval_count=prompt_tokens,
        prompt_eval_duration=durations_ns["prompt_eval"],
        eval_count=eval_tokens,
        eval_duration=durations_ns["eval"],
    )
    return out


def load_reply(req: SimRequest, *, chat: bool, created_at: str) -> dict[str, Any]:
    """The answer to an empty chat or generate: the model is (un)loaded, nothing decoded."""
    out: dict[str, Any] = {"model": req.model, "created_at": created_at}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    out.update(done=True, done_reason=req.action)
    return out


def model_entry(model: str, *, modified_at: str) -> dict[str, Any]:
    """One model as ``/api/tags`` lists it."""
    return {
        "name": model,
        "model": model,
        "modified_at": modified_at,
        "size": MODEL_SIZE_BYTES,
        "digest": digest(model),
        "details": _details(model),
    }


def ps_entry(
    model: str, *, expires_at: str, context_length: int, size_vram: int = MODEL_SIZE_BYTES
) -> dict[str, Any]:
    """One loaded model as ``/api/ps`` lists it: sizes in bytes, its context, when it unloads."""
    return {
        "name": model,
        "model": model,
        "size": MODEL_SIZE_BYTES,
        "digest": digest(model),
        "details": _details(model),
        "expires_at": expires_at,
        "size_vram": size_vram,
        "context_length": context_length,
    }


def show(model: str, *, modified_at: str, context_length: int) -> dict[str, Any]:
    """``POST /api/show``: the model's details, its GGUF key-values and its capabilities."""
    family = _family(model)
    return {
        "license": "",
        "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model}\n',
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": _details(model),
        "model_info": {
            "general.architecture": family,
            "general.parameter_count": 8_030_261_248,
            f"{family}.context_length": context_length,
            f"{family}.embedding_length": EMBEDDING_LENGTH,
        },
        "capabilities": ["completion"],
        "modified_at": modified_at,
    }


def embed_reply(model: str, texts: list[str], *, load_ns: int) -> dict[str, Any]:
    """``POST /api/embed``: one unit vector per text, deterministic in the text."""
    if not texts:
        return {"model": model, "embeddings": []}
    return {
        "model": model,
        "embeddings": [_embedding(text) for text in texts],
        "total_duration": load_ns + 1_000_000 * len(texts),
        "load_duration": load_ns,
        "prompt_eval_count": sum(max(1, len(text) // 4) for text in texts),
    }


def _embedding(text: str) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest() * (EMBEDDING_LENGTH * 2 // 32)
    values = [v - 32768 for (v,) in struct.iter_unpack(">H", seed[: EMBEDDING_LENGTH * 2])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _family(model: str) -> str:
    return model.split(":", maxsplit=1)[0].rstrip("0123456789.").split("-")[0] or model


def _details(model: str) -> dict[str, Any]:
    family = _family(model)
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": "8.0B",
        "quantization_level": "Q4_K_M",
    }


def _check_model(model: str, served_model: str) -> None:
    if not same_model(model, served_model):
        raise error(404, f"model '{model}' not found")


def _request(body: dict[str, Any], model: str, prompt: str, *, empty: bool) -> SimRequest:
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    assert isinstance(options, dict)
    keep_alive_s = _keep_alive(body)
    action: Action = "answer"
    if empty:
        action = "unload" if keep_alive_s == 0 else "load"
    return SimRequest(
        model=model,
        prompt=prompt,
        stream=body.get("stream") is not False,
        output_tokens=positive_int(options.get("num_predict")),
        service_s=non_negative(options.get("ygg_service_s")),
        action=action,
        keep_alive_s=keep_alive_s,
    )


def _keep_alive(body: dict[str, Any]) -> float | None:
    """The body's ``keep_alive`` in seconds; absent or null is None (the server's default)."""
    value = body.get("keep_alive")
    if value is None:
        return None
    try:
        return duration_s(value)
    except GoDecodeError as exc:
        raise error(400, str(exc)) from None


def _decode(raw: bytes, target: str, **fields: str) -> dict[str, Any]:
    """``raw`` bound to ``api.<target>`` (``model`` a string, and ``fields`` of their Go types)."""
    try:
        body = decode_object(raw, target)
        for name, go_type_name in {"model": "string", **fields}.items():
            check_field(body, target, name, go_type_name)
    except GoDecodeError as exc:
        raise error(400, str(exc)) from None
    return body
