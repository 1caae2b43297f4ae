"""A scripted model server for tests: real HTTP on loopback, both dialects, recorded requests.

It answers every ``POST /api/chat`` (Ollama) and ``POST /v1/chat/completions`` (OpenAI) with
``text`` and fixed token counts and timings, unless a scripted :class:`Reply` is queued, which
lets a test make the next answers fail (503, 404 with an error text, a slow answer, a broken
body) without a mock. For realistic load (slots, queues, back-pressure) use ``yggcelery.sim``::

    with FakeModelServer() as server:
        server.script(Reply(status=503, body={"error": "server busy"}))
        ...  # the first request gets 503, the next ones an answer
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from yggcelery.testing.redis import free_port

#: Token counts and Ollama timings (nanoseconds) of the normal answer.
PROMPT_TOKENS = 12
COMPLETION_TOKENS = 7
LOAD_NS, PROMPT_EVAL_NS, EVAL_NS = 1_000_000, 20_000_000, 300_000_000


@dataclass(frozen=True)
class Reply:
    """A scripted answer: ``body`` None means the normal answer, a str is sent as plain text."""

    status: int = 200
    body: dict[str, Any] | str | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(repr=False)


class FakeModelServer:
    """An aiohttp server in a background thread; start with ``with`` or :meth:`start`."""

    def __init__(self, *, text: str = "Paris is the capital of France.") -> None:
        self.text = text
        self.port = free_port()
        self.requests: list[Recorded] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Queue ``replies`` for the next requests, in order."""
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> FakeModelServer:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name=f"fake-model-{self.port}", daemon=True
        )
        self._thread.start()
        started.wait(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = self._runner = None

    def _serve(self, started: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/api/chat", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        started.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.requests.append(Recorded(request.path, dict(request.headers), body))
            reply = self._replies.popleft() if self._replies else Reply()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if isinstance(reply.body, str):
            return web.Response(status=reply.status, text=reply.body)
        answer = reply.body if reply.body is not None else self._answer(request.path, body)
        return web.json_response(answer, status=reply.status)

    def _answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model", "fake")
        if path == "/api/chat":
            return {
                "model": model,
                "message": {"role": "assistant", "content": self.text},
                "done": True,
                "prompt_eval_count": PROMPT_TOKENS,
                "eval_count": COMPLETION_TOKENS,
                "load_duration": LOAD_NS,
                "prompt_eval_duration": PROMPT_EVAL_NS,
                "eval_duration": EVAL_NS,
                "total_duration": LOAD_NS + PROMPT_EVAL_NS + EVAL_NS,
            }
        return {
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text}}],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            },
        }

    def __repr__(self) -> str:
        return f"<FakeModelServer port={self.port} requests={len(self.requests)}>"

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
