"""The model clients: :class:`LLMClient` (threads, Celery workers) and :class:`AsyncLLMClient`.

Each holds one httpx connection pool with explicit timeouts. A process needs only one sync
client, so :func:`get_client` caches it per process (a forked Celery worker child builds its
own, since sockets must not be shared across a fork). Requests are built and answers parsed by
:mod:`yggcelery.llm.wire`, so the two clients differ only in how they send.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from types import TracebackType

import httpx

from yggcelery.llm.types import Completion, TaskTags
from yggcelery.llm.wire import (
    PROBE_PATH,
    ModelRequest,
    build_request,
    http_timeout,
    parse_response,
    parse_stream,
    status_error,
    transport_error,
)
from yggcelery.settings import HostSettings, Settings, TimeoutSettings

log = logging.getLogger(__name__)

_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)


class _Base:
    """What both clients share: the settings, and turning a host name into a request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.requests = 0

    @property
    def timeouts(self) -> TimeoutSettings:
        return self.settings.timeouts

    def _request(
        self,
        host_name: str,
        host: HostSettings | None,
        prompt: str,
        *,
        max_tokens: int | None,
        temperature: float | None,
        tags: TaskTags | None,
        stream: bool = False,
    ) -> ModelRequest:
        self.requests += 1
        return build_request(
            host_name,
            host or self.settings.host(host_name),
            prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            tags=tags,
            stream=stream,
        )

    def _done(self, request: ModelRequest, response: httpx.Response, started: float) -> Completion:
        return self._log(parse_response(request, response, total_s=time.monotonic() - started))

    @staticmethod
    def _log(completion: Completion) -> Completion:
        log.debug(
            "host %s: %s+%s tokens in %.2fs",
            completion.host,
            completion.prompt_tokens,
            completion.completion_tokens,
            completion.total_s,
        )
        return completion

    def __repr__(self) -> str:
        return f"<{type(self).__name__} hosts={len(self.settings.hosts)} requests={self.requests}>"


class LLMClient(_Base):
    """Blocking model client on one ``httpx.Client``; safe to share between threads."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(settings)
        self.http = httpx.Client(
            timeout=http_timeout(settings.timeouts), limits=_LIMITS, transport=transport
        )

    def complete(
        self,
        host_name: str,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tags: TaskTags | None = None,
        host: HostSettings | None = None,
    ) -> Completion:
        """Ask the model on ``host_name`` (or on ``host``, for endpoints outside the fleet).

        Raises :class:`HostUnavailable`, :class:`HostBusy` or :class:`HostRejected`.
        """
        request = self._request(
            host_name, host, prompt, max_tokens=max_tokens, temperature=temperature, tags=tags
        )
        started = time.monotonic()
        try:
            response = self.http.post(request.url, json=request.body, headers=request.headers())
        except httpx.TransportError as exc:
            raise transport_error(request, exc, self.timeouts) from exc
        return self._done(request, response, started)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncLLMClient(_Base):
    """The same client on ``httpx.AsyncClient``, for the asyncio dispatcher (one per loop)."""

    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        super().__init__(settings)
        self.http = httpx.AsyncClient(
            timeout=http_timeout(settings.timeouts), limits=_LIMITS, transport=transport
        )

    async def complete(
        self,
        host_name: str,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tags: TaskTags | None = None,
        host: HostSettings | None = None,
    ) -> Completion:
        """Ask the model on ``host_name``; see :meth:`LLMClient.complete`.

        The answer is streamed and put back together, so that cancelling this coroutine (a
        bead closed by a person) closes the stream and the server stops decoding at once.
        """
        request = self._request(
            host_name, host, prompt, max_tokens=max_tokens, temperature=temperature, tags=tags,
            stream=True,
        )  # fmt: skip
        started = time.monotonic()
        try:
            async with self.http.stream(
                "POST", request.url, json=request.body, headers=request.headers()
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise status_error(request, response)
                lines = [line async for line in response.aiter_lines()]
                content_type = response.headers.get("content-type", "")
        except httpx.TransportError as exc:
            raise transport_error(request, exc, self.timeouts) from exc
        total_s = time.monotonic() - started
        return self._log(parse_stream(request, lines, total_s=total_s, content_type=content_type))

    async def warm(self, host: HostSettings, *, timeout_s: float = 2.0) -> bool:
        """One cheap GET on ``host``'s server (its version or model list, never a model call):
        the client's code paths are loaded and a kept-alive connection is open before the
        first task needs them. Whether the server answered; a failure is only logged."""
        try:
            response = await self.http.get(host.base_url + PROBE_PATH[host.dialect],
                                           timeout=timeout_s)  # fmt: skip
        except httpx.HTTPError as exc:
            log.debug("warm-up of %s failed: %r", host.base_url, exc)
            return False
        return response.is_success

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncLLMClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# pid -> (settings, client); a forked child finds its parent's entry under another pid.
_cache: dict[int, tuple[Settings, LLMClient]] = {}
_cache_lock = threading.Lock()


def get_client(settings: Settings) -> LLMClient:
    """This process's client for ``settings``: built once, and again after a fork.

    A child process never reuses (or closes) the parent's client: its pooled sockets belong to
    the parent. Asking with different settings replaces (and closes) the cached client.
    """
    pid = os.getpid()
    with _cache_lock:
        cached = _cache.get(pid)
        if cached is not None and cached[0] is settings:
            return cached[1]
        if cached is not None:
            cached[1].close()
        _cache.clear()
        client = LLMClient(settings)
        _cache[pid] = (settings, client)
        return client
