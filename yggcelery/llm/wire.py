"""The HTTP exchange with a model server, without doing any I/O.

Both clients (:class:`~yggcelery.llm.client.LLMClient` on ``httpx.Client`` and
:class:`~yggcelery.llm.client.AsyncLLMClient` on ``httpx.AsyncClient``) build their request with
:func:`build_request` and turn the answer into a :class:`Completion` or an error with
:func:`parse_response` and :func:`transport_error`, so the two dialects and the error mapping
live in one place::

    connect error, timeout, broken connection   HostUnavailable  (transient)
    HTTP 429, 503                               HostBusy         (transient)
    HTTP 5xx other than 503, unreadable body    HostUnavailable  (transient)
    HTTP 4xx other than 429 (and 1xx/3xx)       HostRejected     (permanent)

Error messages name the host, the URL and the status, with the server's own error text trimmed;
the API key and the prompt are cut out of that text should the server echo them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from yggcelery.errors import HostBusy, HostError, HostRejected, HostUnavailable
from yggcelery.llm.types import Completion, TaskTags
from yggcelery.settings import Dialect, HostSettings, TimeoutSettings, redact_url

log = logging.getLogger(__name__)

#: Longest piece of a server's error text quoted in an error message.
ERROR_TEXT_CHARS = 200

_PATHS: dict[Dialect, str] = {"ollama": "/api/chat", "openai": "/v1/chat/completions"}
#: A cheap GET per dialect that says the server is up (no model call).
PROBE_PATH: dict[Dialect, str] = {"ollama": "/api/version", "openai": "/v1/models"}
_BUSY = frozenset({429, 503})
_NS_PER_S = 1e9


@dataclass(frozen=True)
class ModelRequest:
    """One chat request, ready to send. Its repr shows neither the prompt nor the key."""

    host_name: str
    dialect: Dialect
    url: str
    model: str
    body: dict[str, Any] = field(repr=False)
    tag_headers: dict[str, str] = field(default_factory=dict)
    api_key: SecretStr | None = None
    prompt: str = field(default="", repr=False)

    def headers(self) -> dict[str, str]:
        """The HTTP headers to send: the task tags, and the bearer key when there is one."""
        headers = dict(self.tag_headers)
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        return headers


def http_timeout(timeouts: TimeoutSettings) -> httpx.Timeout:
    """The httpx timeouts: connect and write from ``connect_s``; read and pool from ``read_s``.

    The pool wait is as long as a read, because a request queued behind busy connections is
    waiting for a model answer just the same.
    """
    return httpx.Timeout(
        connect=timeouts.connect_s,
        read=timeouts.read_s,
        write=timeouts.connect_s,
        pool=timeouts.read_s,
    )


def api_key(host: HostSettings, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """The bearer key from the environment variable the host names, read at call time."""
    if host.api_key_env is None:
        return None
    value = (os.environ if environ is None else environ).get(host.api_key_env, "")
    return SecretStr(value) if value else None


def build_request(
    host_name: str,
    host: HostSettings,
    prompt: str,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    tags: TaskTags | None = None,
    stream: bool = False,
) -> ModelRequest:
    """The request for ``prompt`` in the host's dialect (Ollama ``/api/chat`` or OpenAI).

    ``stream`` asks for the answer in pieces (Ollama's NDJSON lines, OpenAI's server-sent
    events, with the token usage in the last one): closing such a request stops the server's
    decoding at once, which llama.cpp's server does not do for a whole-answer request.
    """
    # The prompt arrives already cut to the target's limit (yggcelery.work.prompt): cut once.
    body: dict[str, Any] = {
        "model": host.model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    }
    if stream and host.dialect == "openai":
        body["stream_options"] = {"include_usage": True}
    if host.dialect == "ollama":
        options = {"num_predict": max_tokens, "temperature": temperature}
        body["options"] = {k: v for k, v in options.items() if v is not None}
    else:
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
    return ModelRequest(
        host_name=host_name,
        dialect=host.dialect,
        url=host.base_url + _PATHS[host.dialect],
        model=host.model,
        body=body,
        tag_headers=(tags or TaskTags()).headers(),
        api_key=api_key(host),
        prompt=prompt,
    )


def transport_error(
    request: ModelRequest, exc: httpx.TransportError, timeouts: TimeoutSettings
) -> HostUnavailable:
    """The error for a request that got no HTTP answer: refused, timed out, cut off."""
    where = redact_url(request.url)
    kind = type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        what = f"no connection to {where} within {timeouts.connect_s:g}s ({kind})"
    elif isinstance(exc, httpx.TimeoutException):
        what = f"no answer from {where} within {timeouts.read_s:g}s ({kind})"
    else:
        detail = _scrub(str(exc), request) or "no detail"
        what = f"cannot reach {where} ({kind}: {detail})"
    return HostUnavailable(request.host_name, what)


def parse_response(
    request: ModelRequest, response: httpx.Response, *, total_s: float
) -> Completion:
    """The completion in ``response``, or the :class:`HostError` its status maps to."""
    if not response.is_success:
        raise status_error(request, response)
    try:
        data = response.json()
        if request.dialect == "ollama":
            return _ollama_completion(request, data, total_s)
        return _openai_completion(request, data, total_s)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        where = redact_url(request.url)
        problem = f"{type(exc).__name__}: {_scrub(str(exc), request)}"
        raise HostUnavailable(
            request.host_name,
            f"HTTP {response.status_code} from {where}: unreadable answer ({problem})",
            status=response.status_code,
        ) from None


def parse_stream(
    request: ModelRequest, lines: list[str], *, total_s: float, content_type: str = ""
) -> Completion:
    """The completion a successful streamed answer's ``lines`` add up to (the same
    :class:`Completion` as a whole answer), or :class:`HostUnavailable` when they do not.

    A server that ignores ``stream`` answers one JSON document (``application/json``); that
    is read as the whole answer it is.
    """
    try:
        whole = content_type.split(";", maxsplit=1)[0].strip() == "application/json"
        if request.dialect == "ollama":
            data = json.loads("\n".join(lines)) if whole else _ollama_joined(lines)
            return _ollama_completion(request, data, total_s)
        data = json.loads("\n".join(lines)) if whole else _openai_joined(lines)
        return _openai_completion(request, data, total_s)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        where = redact_url(request.url)
        problem = f"{type(exc).__name__}: {_scrub(str(exc), request)}"
        raise HostUnavailable(
            request.host_name, f"HTTP 200 from {where}: unreadable streamed answer ({problem})"
        ) from None


def _ollama_joined(lines: list[str]) -> dict[str, Any]:
    """Ollama's NDJSON pieces as one whole answer: the last (``done``) line, all the text."""
    pieces = [json.loads(line) for line in lines if line.strip()]
    failed = next((p["error"] for p in pieces if "error" in p), None)
    if failed is not None:
        raise ValueError(f"the server stopped with an error: {failed}")
    last = pieces[-1]
    if last.get("done") is not True:
        raise ValueError("the stream ended before its done line")
    text = "".join(p.get("message", {}).get("content") or "" for p in pieces)
    return {**last, "message": {**last.get("message", {}), "content": text}}


def _openai_joined(lines: list[str]) -> dict[str, Any]:
    """OpenAI's server-sent events as one whole answer: the text of every delta, the usage
    (and llama.cpp's timings) of the last events."""
    events = [line[len("data:") :].strip() for line in lines if line.startswith("data:")]
    if "[DONE]" not in events:
        raise ValueError("the stream ended before [DONE]")
    chunks = [json.loads(event) for event in events if event != "[DONE]"]
    failed = next((c["error"] for c in chunks if "error" in c), None)
    if failed is not None:
        raise ValueError(f"the server stopped with an error: {failed}")
    text = "".join(
        (choice.get("delta") or {}).get("content") or ""
        for chunk in chunks
        for choice in chunk.get("choices") or ()
    )
    joined: dict[str, Any] = {"choices": [{"message": {"content": text}}]}
    for chunk in chunks:  # later events win: the usage and timings come last
        for key in ("model", "usage", "timings"):
            if chunk.get(key):
                joined[key] = chunk[key]
    return joined


def status_error(request: ModelRequest, response: httpx.Response) -> HostError:
    """The error an HTTP error status maps to, quoting the server's (trimmed) error text."""
    status = response.status_code
    reason = _scrub(_error_text(response), request) or response.reason_phrase
    message = f"HTTP {status} from {redact_url(request.url)}: {reason}"
    if status in _BUSY:
        return HostBusy(request.host_name, message, status=status)
    if status >= 500:
        return HostUnavailable(request.host_name, message, status=status)
    return HostRejected(request.host_name, message, status=status)


def _error_text(response: httpx.Response) -> str:
    """The server's error text: Ollama's ``error``, OpenAI's ``error.message``, else the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text
    if isinstance(data, dict):
        error = data.get("error", data.get("detail"))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return error if isinstance(error, str) else json.dumps(error)
    return response.text


def _scrub(text: str, request: ModelRequest) -> str:
    """``text`` on one line, without the prompt or the key, at most ERROR_TEXT_CHARS long."""
    if request.prompt:
        text = text.replace(request.prompt, "<prompt>")
    if request.api_key is not None and request.api_key.get_secret_value():
        text = text.replace(request.api_key.get_secret_value(), "***")
    text = " ".join(text.split())
    if len(text) > ERROR_TEXT_CHARS:
        text = text[: ERROR_TEXT_CHARS - 3] + "..."
    return text


def _seconds(value: Any, *, per_s: float = _NS_PER_S) -> float | None:
    """``value`` (nanoseconds by default) in seconds, or None when the server did not send it."""
    return value / per_s if isinstance(value, int | float) else None


def _ollama_completion(request: ModelRequest, data: dict[str, Any], total_s: float) -> Completion:
    return Completion(
        text=data["message"]["content"],
        host=request.host_name,
        model=data.get("model") or request.model,
        prompt_tokens=data.get("prompt_eval_count"),
        completion_tokens=data.get("eval_count"),
        total_s=total_s,
        load_s=_seconds(data.get("load_duration")),
        prompt_eval_s=_seconds(data.get("prompt_eval_duration")),
        eval_s=_seconds(data.get("eval_duration")),
    )


def _openai_completion(request: ModelRequest, data: dict[str, Any], total_s: float) -> Completion:
    usage = data.get("usage") or {}
    # llama.cpp's own server adds "timings" in milliseconds; other OpenAI servers do not.
    timings = data.get("timings") or {}
    return Completion(
        text=data["choices"][0]["message"]["content"] or "",
        host=request.host_name,
        model=data.get("model") or request.model,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        total_s=total_s,
        prompt_eval_s=_seconds(timings.get("prompt_ms"), per_s=1e3),
        eval_s=_seconds(timings.get("predicted_ms"), per_s=1e3),
    )
