"""The Ollama dialect: request parsing, answer shapes and error bodies, as Ollama sends them.

Error answers follow ``server/routes.go`` of current Ollama (0.12-0.13 era):

- empty body: 400 ``missing request body``; malformed JSON: 400 with Go's ``encoding/json``
  message (reproduced for the common cases, e.g. ``invalid character 'x' looking for beginning
  of value``, ``unexpected EOF``);
- ``/api/chat`` without a model: 400 ``model is required``; ``/api/generate`` without one: 404
  ``model '' not found`` (its handler parses the name first);
- unknown model: 404 ``model 'x' not found``. Older Ollama (before 0.4) said
  ``model "x" not found, try pulling it first``; the status, which clients act on, is the same;
- queue full: 503 ``server busy, please try again.  maximum pending requests exceeded``
  (two spaces, as ``server/sched.go`` has it).
"""

from __future__ import annotations

import json
from typing import Any

from yggcelery.sim.protocol import ApiError, SimRequest, digest, non_negative, positive_int

VERSION = "0.12.6"
BUSY = "server busy, please try again.  maximum pending requests exceeded"
#: What Ollama answers when its runner dies mid-request (``llm/server.go``).
RUNNER_STOPPED = (
    "model runner has unexpectedly stopped, this may be due to resource limitations or an "
    "internal error, check ollama server logs for details"
)

_GO_TYPES = {dict: "object", list: "array", str: "string", bool: "bool", int: "number"}


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
    body = _decode(raw, "ChatRequest")
    model = body.get("model") or ""
    if not model:
        raise error(400, "model is required")
    _check_model(model, served_model)
    messages = body.get("messages") or []
    prompt = ""
    if isinstance(messages, list):
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        prompt = str((users or [{}])[-1].get("content") or "")
    return _request(body, model, prompt)


def parse_generate(raw: bytes, served_model: str) -> SimRequest:
    """A ``POST /api/generate`` body, or the :class:`ApiError` Ollama would answer."""
    body = _decode(raw, "GenerateRequest")
    model = body.get("model") or ""
    _check_model(model, served_model)
    return _request(body, model, str(body.get("prompt") or ""))


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
) -> dict[str, Any]:
    """The last object of an answer (``done: true``) with Ollama's counters and durations."""
    out = chunk(req, text, chat=chat, created_at=created_at)
    out["done"] = True
    out["done_reason"] = "stop"
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


def model_entry(model: str, *, modified_at: str) -> dict[str, Any]:
    """One model as ``/api/tags`` lists it."""
    family = model.split(":", maxsplit=1)[0].rstrip("0123456789.").split("-")[0] or model
    return {
        "name": model,
        "model": model,
        "modified_at": modified_at,
        "size": 4_920_753_328,
        "digest": digest(model),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "8.0B",
            "quantization_level": "Q4_K_M",
        },
    }


def _check_model(model: str, served_model: str) -> None:
    if not same_model(model, served_model):
        raise error(404, f"model '{model}' not found")


def _request(body: dict[str, Any], model: str, prompt: str) -> SimRequest:
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    assert isinstance(options, dict)
    return SimRequest(
        model=model,
        prompt=prompt,
        stream=body.get("stream") is not False,
        output_tokens=positive_int(options.get("num_predict")),
        service_s=non_negative(options.get("ygg_service_s")),
    )


def _decode(raw: bytes, target: str) -> dict[str, Any]:
    """``raw`` as a JSON object, or 400 with the message Go's decoder would give."""
    text = raw.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise error(400, "missing request body")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)  # Go's Decoder ignores trailing data
    except json.JSONDecodeError as exc:
        raise error(400, _go_syntax_error(exc)) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise error(
            400, f"json: cannot unmarshal {_go_type(value)} into Go value of type api.{target}"
        )
    model = value.get("model")
    if model is not None and not isinstance(model, str):
        raise error(
            400,
            f"json: cannot unmarshal {_go_type(model)} into Go struct field "
            f"{target}.model of type string",
        )
    return value


def _go_type(value: Any) -> str:
    return _GO_TYPES.get(type(value), "number")


def _go_syntax_error(exc: json.JSONDecodeError) -> str:
    """Go's ``encoding/json`` wording for the syntax error Python found."""
    if exc.pos >= len(exc.doc) or exc.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    char = exc.doc[exc.pos]
    if exc.msg == "Expecting value" and char in _LITERALS:
        return _bad_literal(exc.doc[exc.pos :], _LITERALS[char])
    where = {
        "Expecting property name enclosed in double quotes": (
            "looking for beginning of object key string"
        ),
        "Expecting ':' delimiter": "after object key",
        "Expecting ',' delimiter": _after_element(exc.doc, exc.pos),
    }.get(exc.msg, "looking for beginning of value")
    if exc.msg.startswith("Invalid control character"):
        where = "in string literal"
    return f"invalid character {_go_quote(char)} {where}"


_LITERALS = {"n": "null", "t": "true", "f": "false"}


def _bad_literal(text: str, literal: str) -> str:
    """Go's message for a broken ``null``/``true``/``false`` at the start of ``text``."""
    for index, expected in enumerate(literal):
        if index >= len(text):
            return "unexpected EOF"
        if text[index] != expected:
            bad, want = _go_quote(text[index]), _go_quote(expected)
            return f"invalid character {bad} in literal {literal} (expecting {want})"
    return f"invalid character {_go_quote(text[len(literal)])} after top-level value"


def _after_element(doc: str, pos: int) -> str:
    """Whether the missing ',' is inside an object or an array (the innermost open bracket)."""
    depth: list[str] = []
    in_string = escaped = False
    for char in doc[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth.append(char)
        elif char in "]}" and depth:
            depth.pop()
    return "after array element" if depth and depth[-1] == "[" else "after object key:value pair"


def _go_quote(char: str) -> str:
    """A character quoted as Go's ``quoteChar`` does: ``'x'``, ``'\\''``, ``'"'``."""
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    return repr(char) if char.isprintable() else json.dumps(char).replace('"', "'")
