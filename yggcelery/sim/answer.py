"""Writing one served answer over HTTP, streamed or whole, in either dialect, over its service time.

The slot is held for the whole write: a streamed answer sends its pieces spaced evenly over the
real service time (simulated seconds times ``time_scale``); a whole one, when that time is up.
Pieces are timed against the answer's start (:func:`paced`), not one sleep after another, so
the timer's lateness on a busy machine does not add up over an answer's words.
Ollama's durations are reported in *simulated* nanoseconds, so tokens per second come out as on
the real GPU.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from yggcelery.sim import ollama, openai
from yggcelery.sim.protocol import (
    SimRequest,
    answer_text,
    go_timestamp,
    prompt_tokens,
    split_chunks,
)

NDJSON = "application/x-ndjson"
#: The legacy text completion endpoint; the other ``/v1`` model call is chat.
TEXT = "/v1/completions"
_NS = 1_000_000_000


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How one accepted request is served: its times (simulated seconds) and token counts."""

    req: SimRequest
    endpoint: str
    wait_s: float
    prefill_s: float
    service_s: float
    eval_tokens: int
    time_scale: float
    #: "length" when the request's own output limit cut the answer short, else "stop".
    finish_reason: str = "stop"

    @property
    def real_s(self) -> float:
        return self.service_s * self.time_scale

    @property
    def text(self) -> str:
        return answer_text(self.req.model, self.req.prompt)

    @property
    def prompt_tokens(self) -> int:
        return prompt_tokens(self.req.prompt)


async def paced(pieces: Sequence[str], *, real_s: float) -> AsyncIterator[str]:
    """Each of ``pieces`` when its even share of ``real_s`` since the first call is up.

    Every sleep ends a little late (more so on a loaded machine); sleeping until each piece's
    due time, rather than one share after another, keeps that lateness from adding up, so an
    answer of N words takes ``real_s`` plus one timer's lateness, not N of them.
    """
    loop = asyncio.get_running_loop()
    start, step = loop.time(), real_s / max(len(pieces), 1)
    for n, piece in enumerate(pieces, start=1):
        await asyncio.sleep(max(start + n * step - loop.time(), 0.0))
        yield piece


async def send(request: web.Request, plan: Plan) -> web.StreamResponse:
    """Serve ``plan`` to ``request`` in the dialect of its endpoint."""
    if plan.endpoint.startswith("/v1/"):
        if plan.req.stream:
            return await _openai_stream(request, plan)
        await asyncio.sleep(plan.real_s)
        whole = openai.text_completion if plan.endpoint == TEXT else openai.completion
        body = whole(
            plan.req,
            plan.text,
            created=int(time.time()),
            prompt_tokens=plan.prompt_tokens,
            completion_tokens=plan.eval_tokens,
            finish_reason=plan.finish_reason,
        )
        return web.json_response(body)
    if plan.req.stream:
        return await _ollama_stream(request, plan)
    await asyncio.sleep(plan.real_s)
    return web.json_response(_ollama_final(plan, plan.text))


async def _ollama_stream(request: web.Request, plan: Plan) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": NDJSON})
    await response.prepare(request)
    chat = plan.endpoint == "/api/chat"
    async for piece in paced(split_chunks(plan.text), real_s=plan.real_s):
        line = ollama.chunk(plan.req, piece, chat=chat, created_at=go_timestamp())
        await response.write(_line(line))
    await response.write(_line(_ollama_final(plan, "")))
    await response.write_eof()
    return response


def _ollama_final(plan: Plan, text: str) -> dict[str, Any]:
    durations = {
        "load": int(plan.wait_s * _NS),
        "prompt_eval": int(plan.prefill_s * _NS),
        "eval": int((plan.service_s - plan.prefill_s) * _NS),
    }
    durations["total"] = sum(durations.values())
    return ollama.final(
        plan.req,
        text,
        chat=plan.endpoint == "/api/chat",
        created_at=go_timestamp(),
        durations_ns=durations,
        prompt_tokens=plan.prompt_tokens,
        eval_tokens=plan.eval_tokens,
        done_reason=plan.finish_reason,
    )


async def _openai_stream(request: web.Request, plan: Plan) -> web.StreamResponse:
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    text = plan.endpoint == TEXT
    chunk_id = openai.new_text_id() if text else openai.new_chunk_id()
    created = int(time.time())
    if not text:
        role = {"role": "assistant", "content": ""}
        first = openai.stream_chunk(plan.req, chunk_id=chunk_id, created=created, delta=role)
        await response.write(_event(first))
    async for piece in paced(split_chunks(plan.text), real_s=plan.real_s):
        await response.write(_event(_openai_piece(plan, chunk_id, created, piece)))
    last = _openai_piece(plan, chunk_id, created, None, finish_reason=plan.finish_reason)
    await response.write(_event(last))
    if plan.req.include_usage:
        usage = openai.usage_chunk(
            plan.req,
            chunk_id=chunk_id,
            created=created,
            prompt_tokens=plan.prompt_tokens,
            completion_tokens=plan.eval_tokens,
        )
        if text:
            usage["object"] = "text_completion"
        await response.write(_event(usage))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _openai_piece(
    plan: Plan, chunk_id: str, created: int, piece: str | None, *, finish_reason: str | None = None
) -> dict[str, Any]:
    """One streamed chunk: a chat delta, or a text completion piece; None is the closing one."""
    if plan.endpoint == TEXT:
        return openai.text_chunk(
            plan.req, chunk_id=chunk_id, created=created, text=piece or "",
            finish_reason=finish_reason,
        )  # fmt: skip
    delta = {} if piece is None else {"content": piece}
    return openai.stream_chunk(
        plan.req, chunk_id=chunk_id, created=created, delta=delta, finish_reason=finish_reason
    )


def _line(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def _event(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
