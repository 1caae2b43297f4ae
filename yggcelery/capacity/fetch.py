"""Short HTTP reads of a model server's status endpoints, failing with one line naming host and URL.

::

    connection refused, DNS, timeout        HostUnavailable   "GET <url>: cannot connect (...)"
    HTTP 4xx, 501 (endpoint not there)      HostRejected      "GET <url>: HTTP 404 File Not Found"
    HTTP 5xx other than 501                 HostUnavailable   "GET <url>: HTTP 503 Loading model"
    HTML, garbage, not Prometheus text      HostError         "GET <url>: not JSON: '<!DOCTYPE...'"

:func:`missing` tells an endpoint this server does not have (404, 405, 501) from a failure, which
is how a probe finds out which server it talks to.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from yggcelery.errors import HostError, HostRejected, HostUnavailable
from yggcelery.llm.wire import api_key
from yggcelery.settings import HostSettings, redact_url

#: Statuses that mean "this server has no such endpoint" (501: llama.cpp's switched-off ones).
MISSING = frozenset({404, 405, 501})
#: Characters of a bad answer quoted in an error.
QUOTE_CHARS = 60


@dataclass(frozen=True)
class Sample:
    """One Prometheus sample: its labels and value."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Target:
    """One host's server, the client to reach it with, and the timeout of a status read."""

    name: str
    host: HostSettings
    client: httpx.Client = field(repr=False)
    timeout_s: float = 3.0

    def url(self, path: str) -> str:
        return self.host.base_url + path

    def get(self, path: str, *, timeout_s: float | None = None) -> httpx.Response:
        """``GET path`` with a 2xx answer, else the host error of :mod:`this module <.fetch>`."""
        return self._send("GET", path, None, timeout_s)

    def get_json(self, path: str) -> Any:
        return self._json(self.get(path), "GET", path)

    def post_json(self, path: str, body: dict[str, Any], *, timeout_s: float | None = None) -> Any:
        return self._json(self._send("POST", path, body, timeout_s), "POST", path)

    def get_metrics(self, path: str = "/metrics") -> dict[str, list[Sample]]:
        """The Prometheus text at ``path``, parsed by prometheus_client: sample name → samples."""
        text = self.get(path).text
        out: dict[str, list[Sample]] = defaultdict(list)
        try:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    out[sample.name].append(Sample(dict(sample.labels), float(sample.value)))
        except (ValueError, TypeError, IndexError) as exc:
            raise self._bad("GET", path, f"not Prometheus text ({exc}): {_quote(text)}") from None
        return dict(out)

    def _send(
        self, method: str, path: str, body: dict[str, Any] | None, timeout_s: float | None
    ) -> httpx.Response:
        url = self.url(path)
        headers = {"Accept": "application/json"}
        key = api_key(self.host)
        if key is not None:
            headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        try:
            response = self.client.request(
                method, url, json=body, headers=headers, timeout=timeout_s or self.timeout_s
            )
        except httpx.TimeoutException:
            wait_s = timeout_s or self.timeout_s
            raise self._down(method, path, f"no answer within {wait_s:g}s") from None
        except httpx.HTTPError as exc:
            raise self._down(method, path, f"cannot connect ({_reason(exc)})") from None
        if response.is_success:
            return response
        status = response.status_code
        text = f"HTTP {status} {_error_text(response)}".rstrip()
        if status in MISSING or 400 <= status < 500:
            raise HostRejected(self.name, f"{method} {redact_url(url)}: {text}", status=status)
        raise HostUnavailable(self.name, f"{method} {redact_url(url)}: {text}", status=status)

    def _json(self, response: httpx.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise self._bad(method, path, f"not JSON: {_quote(response.text)}") from None

    def _down(self, method: str, path: str, why: str) -> HostUnavailable:
        return HostUnavailable(self.name, f"{method} {redact_url(self.url(path))}: {why}")

    def _bad(self, method: str, path: str, why: str) -> HostError:
        return HostError(self.name, f"{method} {redact_url(self.url(path))}: {why}")


def missing(exc: HostError) -> bool:
    """Whether ``exc`` says the server has no such endpoint (rather than failing)."""
    return isinstance(exc, HostRejected) and exc.status in MISSING


def reason(exc: HostError) -> str:
    """What went wrong, without the ``host <name>:`` the error starts with."""
    return str(exc).removeprefix(f"host {exc.host}: ")


def bad_answer(target: Target, path: str, what: str) -> HostError:
    """The error for a JSON answer without the fields a probe needs."""
    return HostError(target.name, f"GET {redact_url(target.url(path))}: {what}")


def _error_text(response: httpx.Response) -> str:
    """The server's own error message: OpenAI/llama.cpp/Ollama/FastAPI shapes, else the text."""
    try:
        body = response.json()
    except ValueError:
        return _quote(response.text) if response.text.strip() else ""
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str):
            return _quote(error)
    return _quote(json.dumps(body))


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat[:QUOTE_CHARS] + ("..." if len(flat) > QUOTE_CHARS else ""))


def _reason(exc: httpx.HTTPError) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
