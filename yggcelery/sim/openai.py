"""The OpenAI dialect (``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``), errors too.

Errors are ``{"error": {"message", "type", "param", "code"}}`` with the wording api.openai.com
uses: 400 for a body that is not JSON and for a missing ``model``, ``messages`` or ``prompt``,
404 ``model_not_found`` for an unknown model, 404 "Invalid URL (GET /v1/x)" for an unknown
path, 500 ``server_error``, 503 "The server is overloaded or not ready yet.". The official
``openai`` client maps these to BadRequestError, NotFoundError, InternalServerError and
APIStatusError(503). An answer cut by ``max_tokens`` has ``finish_reason: "length"``.
(llama.cpp ignores the model name and vLLM words its 404 differently; OpenAI's shape is the one
every OpenAI-compatible client understands.)
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from yggcelery.sim.protocol import ApiError, SimRequest, non_negative, positive_int

NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
    "not valid JSON. If you have trouble figuring out how to fix this, please contact us through "
    "our help center at help.openai.com.)"
)
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
OVERLOADED = "The server is overloaded or not ready yet."


def error(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> ApiError:
    """An OpenAI error answer."""
    return ApiError(
        status, {"error": {"message": message, "type": kind, "param": param, "code": code}}
    )


def server_error() -> ApiError:
    return error(500, SERVER_ERROR, kind="server_error")


def overloaded() -> ApiError:
    return error(503, OVERLOADED, kind="server_error")


def parse_chat(raw: bytes, served_model: str) -> SimRequest:
    """A ``POST /v1/chat/completions`` body, or the :class:`ApiError` OpenAI would answer."""
    body = _body(raw)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _missing("messages")
    return _request(body, served_model, _last_user_text(messages))


def parse_completion(raw: bytes, served_model: str) -> SimRequest:
    """A ``POST /v1/completions`` body (legacy text completion), or OpenAI's refusal."""
    body = _body(raw)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(str(p) for p in prompt)
    if not isinstance(prompt, str):
        raise _missing("prompt")
    return _request(body, served_model, prompt)


def model_not_found(model: str) -> ApiError:
    """``GET /v1/models/{id}`` for a model this host does not serve."""
    return error(404, f"The model '{model}' does not exist", param="model", code="model_not_found")


def invalid_url(method: str, path: str) -> ApiError:
    """A path under ``/v1`` that the API does not have."""
    return error(404, f"Invalid URL ({method} {path})")


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise error(400, NOT_JSON) from None
    if not isinstance(body, dict):
        raise error(400, NOT_JSON)
    model = body.get("model")
    if not model or not isinstance(model, str):
        raise error(400, "you must provide a model parameter")
    return body


def _missing(name: str) -> ApiError:
    return error(
        400,
        f"Missing required parameter: '{name}'.",
        param=name,
        code="missing_required_parameter",
    )


def _request(body: dict[str, Any], served_model: str, prompt: str) -> SimRequest:
    model = str(body["model"])
    if model != served_model:
        raise error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
    assert isinstance(options, dict)
    return SimRequest(
        model=model,
        prompt=prompt,
        stream=body.get("stream") is True,
        output_tokens=positive_int(body.get("max_completion_tokens") or body.get("max_tokens")),
        service_s=non_negative(body.get("ygg_service_s")),
        include_usage=options.get("include_usage") is True,
    )


def completion(
    req: SimRequest,
    text: str,
    *,
    created: int,
    prompt_tokens: int,
    completion_tokens: int,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """A whole (non-streamed) chat completion."""
    return {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": created,
        "model": req.model,
        "system_fingerprint": "fp_yggsim",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def text_completion(
    req: SimRequest,
    text: str,
    *,
    created: int,
    prompt_tokens: int,
    completion_tokens: int,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """A whole (non-streamed) legacy text completion."""
    body = text_chunk(
        req, chunk_id=new_text_id(), created=created, text=text, finish_reason=finish_reason
    )
    body["usage"] = usage(prompt_tokens, completion_tokens)
    return body


def text_chunk(
    req: SimRequest, *, chunk_id: str, created: int, text: str, finish_reason: str | None = None
) -> dict[str, Any]:
    """One piece of a legacy text completion (streamed pieces share one id)."""
    return {
        "id": chunk_id,
        "object": "text_completion",
        "created": created,
        "model": req.model,
        "system_fingerprint": "fp_yggsim",
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
    }


def stream_chunk(
    req: SimRequest,
    *,
    chunk_id: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a streamed answer."""
    out: dict[str, Any] = {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": req.model,
        "system_fingerprint": "fp_yggsim",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if req.include_usage:
        out["usage"] = None
    return out


def usage_chunk(
    req: SimRequest, *, chunk_id: str, created: int, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, the usage."""
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": req.model,
        "system_fingerprint": "fp_yggsim",
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def model_object(model: str, *, created: int, owned_by: str = "library") -> dict[str, Any]:
    """One model as ``GET /v1/models/{id}`` answers it (and ``/v1/models`` lists it)."""
    return {"id": model, "object": "model", "created": created, "owned_by": owned_by}


def models(*entries: dict[str, Any]) -> dict[str, Any]:
    """The ``GET /v1/models`` list of ``entries``."""
    return {"object": "list", "data": list(entries)}


def new_chunk_id() -> str:
    return _completion_id()


def new_text_id() -> str:
    return f"cmpl-{uuid.uuid4().hex[:24]}"


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def _last_user_text(messages: list[Any]) -> str:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    content = (users or [{}])[-1].get("content") or ""
    if isinstance(content, list):  # content parts: keep the text ones
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)
