"""One simulated model host: a real HTTP server on 127.0.0.1 with a simulated GPU behind it.

It stands in for one model server (``config.server``): Ollama (``/api/chat``, ``/api/generate``,
``/api/embed``, ``/api/show``, ``/api/tags``, ``/api/ps``, ``/api/version`` and the OpenAI API),
llama.cpp's ``llama-server``, vLLM, or a bare OpenAI-compatible server; each serves the OpenAI
API (``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``) and its own status endpoints
(:mod:`.surfaces`). The server's parallelism (``config.parallel``) may differ from the
configured ``slots`` and can be changed at run time. Control endpoints:

    GET  /sim/status    busy slots, queue, served, busy slot-seconds, utilisation, max concurrency
    GET  /sim/records   a list, one row per model request (bead, priority, kind, times, slot...)
    POST /sim/reset     zero the statistics and records
    POST /sim/fail      {"error_rate": f, "latency_s": f, "hang": b, "down": b, "down_for_s": f,
                         "parallel": n}
    POST /sim/heal      clear error_rate, latency_s, hang and parallel
    GET  /metrics       Prometheus text (the server's own series, then ``ygg_sim_*``)

Faults touch only the model endpoints, so a host can always be healed over HTTP, except ``down``:
the listening socket is closed (connection refused) and open connections are dropped, so HTTP
cannot bring it back on that port. ``{"down_for_s": N}`` brings it back after N real seconds;
``{"down": true}`` stays down until :meth:`SimHost.up` is called in-process.

The public methods are safe to call from any thread; the server runs on the loop it was started
on (a :class:`~yggcelery.sim.fleet.SimFleet` thread).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

from aiohttp import web

from yggcelery.errors import ConfigError
from yggcelery.sim import control, ollama, openai, surfaces
from yggcelery.sim.answer import Plan, send
from yggcelery.sim.config import SimHostConfig
from yggcelery.sim.control import Faults, RequestRecord
from yggcelery.sim.gpu import QueueFull, SlotPool
from yggcelery.sim.metrics import HostMetrics
from yggcelery.sim.protocol import ApiError, SimRequest, go_timestamp
from yggcelery.sim.residency import Residency

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_RECORDS = 100_000
#: Status recorded for a request whose client went away (Ollama logs these as 499).
CLIENT_CLOSED = 499
_PARSERS: dict[str, Callable[[bytes, str], SimRequest]] = {
    "/api/chat": ollama.parse_chat,
    "/api/generate": ollama.parse_generate,
    "/v1/chat/completions": openai.parse_chat,
    "/v1/completions": openai.parse_completion,
}


class SimHost:
    """A simulated Ollama/OpenAI server with ``config.slots`` GPU slots and injectable faults."""

    def __init__(self, config: SimHostConfig) -> None:
        self.config = config
        self.faults = Faults()
        self.pool = SlotPool(
            slots=config.server_parallel, max_queue=config.max_queue, time_scale=config.time_scale
        )
        self.residency = Residency(keep_alive_s=config.keep_alive_s)
        self.metrics = HostMetrics(host=config.name, model=config.model, pool=self.pool)
        self._records: deque[RequestRecord] = deque(maxlen=MAX_RECORDS)
        self._rng = random.Random(config.name)
        self._inflight: set[asyncio.Task[Any]] = set()
        self._port = config.port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._revive: asyncio.TimerHandle | None = None
        self.started_at = go_timestamp()

    def __repr__(self) -> str:
        state = "down" if self._site is None else "up"
        return f"<SimHost {self.name} {self.url} {state} busy={self.pool.busy}/{self.pool.slots}>"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    base_url = url

    # -- lifecycle (on the serving loop) ------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1:``config.port`` (a free port when 0) on the running loop."""
        self._loop = asyncio.get_running_loop()
        # handler_cancellation: a client that goes away frees its slot, as Ollama cancels the
        # generation when the request context ends.
        self._runner = web.AppRunner(
            self._app(), access_log=None, shutdown_timeout=0.5, handler_cancellation=True
        )
        await self._runner.setup()
        await self._listen()
        self._port = int(self._runner.addresses[0][1])
        log.debug("sim host %s listening on %s", self.name, self.url)

    async def stop(self) -> None:
        """Stop listening, abort every open request (hung ones included), free the port."""
        self._cancel_revive()
        for task in list(self._inflight):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._site = None

    async def go_down(self, *, for_s: float | None = None) -> None:
        """Crash: close the listener, abort requests in flight, drop open connections."""
        self._cancel_revive()
        self.faults.down = True
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if for_s is not None:
            loop = asyncio.get_running_loop()
            self._revive = loop.call_later(for_s, lambda: loop.create_task(self.go_up()))
        for task in list(self._inflight):
            task.cancel()
        assert self._runner is not None and self._runner.server is not None
        for connection in self._runner.server.connections:
            connection.force_close()
        log.info("sim host %s is down", self.name)

    async def go_up(self) -> None:
        """Listen again on the same port."""
        self._cancel_revive()
        if self._site is None:
            await self._listen()
        self.faults.down = False
        log.info("sim host %s is up on %s", self.name, self.url)

    # -- thread-safe controls -----------------------------------------------------------------

    def down(self, *, for_s: float | None = None) -> None:
        """Take the host down now (connection refused); back up after ``for_s`` real seconds."""
        self._run(lambda: self.go_down(for_s=for_s))

    def up(self) -> None:
        """Bring the host back on the same port."""
        self._run(self.go_up)

    def fail(
        self,
        *,
        error_rate: float | None = None,
        latency_s: float | None = None,
        hang: bool | None = None,
    ) -> None:
        """Inject faults: a share of 500 answers, extra simulated latency, or never answering."""
        self._call(
            lambda: self.faults.update(error_rate=error_rate, latency_s=latency_s, hang=hang)
        )

    def heal(self) -> None:
        """Clear error_rate, latency, hang and parallel (not down: see :meth:`up`)."""
        self._call(self._heal)

    def set_parallel(self, parallel: int | None) -> None:
        """Run ``parallel`` requests at once from now (None: as configured), as after a restart."""
        self._call(lambda: self._set_parallel(parallel))

    def status(self) -> dict[str, Any]:
        """What ``GET /sim/status`` answers."""
        return self._call(self._status)

    def records(self) -> list[dict[str, Any]]:
        """What ``GET /sim/records`` lists: one dict per model request, in arrival order."""
        return self._call(lambda: [r.to_dict() for r in self._records])

    def reset(self) -> None:
        """Zero the statistics and forget the records."""
        self._call(self._reset)

    # -- HTTP ---------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        server = self.config.server
        app = web.Application(middlewares=[surfaces.json_not_found(server)])
        for path in surfaces.model_call_paths(server):
            app.router.add_post(path, self._model_call)
        for method, path, handler in surfaces.routes(server):
            app.router.add_route(method, path, functools.partial(handler, self))
        app.router.add_get("/sim/status", self._http_status)
        app.router.add_get("/sim/records", self._http_records)
        app.router.add_post("/sim/reset", self._http_reset)
        app.router.add_post("/sim/fail", self._http_fail)
        app.router.add_post("/sim/heal", self._http_heal)
        return app

    async def _model_call(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        record = control.new_record(self.name, request, default_kind=self.config.kind)
        self._records.append(record)
        try:
            response = await self._answer(request, record)
        except ApiError as exc:
            response = web.json_response(exc.body, status=exc.status)
        except ConnectionResetError:  # the client left mid-answer; aiohttp drops this quietly
            response = web.Response(status=CLIENT_CLOSED)
        except asyncio.CancelledError:  # the client left, or the host went down or stopped
            record.status = None if self.faults.down else CLIENT_CLOSED
            if record.status is not None:
                self.metrics.observe(endpoint=record.endpoint, status=record.status, service_s=None)
            raise
        finally:
            self._inflight.discard(task)
        record.status = response.status
        self.metrics.observe(
            endpoint=record.endpoint, status=response.status, service_s=record.service_s
        )
        return response

    async def _answer(self, request: web.Request, record: RequestRecord) -> web.StreamResponse:
        if self.faults.hang:
            await asyncio.get_running_loop().create_future()  # never answers
        req = _PARSERS[record.endpoint](await request.read(), self.config.model)
        if req.action != "answer":
            return self._load(req, chat=record.endpoint == "/api/chat")
        openai_api = record.endpoint.startswith("/v1/")
        if self.faults.error_rate and self._rng.random() < self.faults.error_rate:
            raise openai.server_error() if openai_api else ollama.error(500, ollama.RUNNER_STOPPED)
        if self.faults.latency_s:
            record.latency_s = self.faults.latency_s
            await asyncio.sleep(record.latency_s * self.config.time_scale)
        self.residency.begin()
        try:
            return await self._serve(request, record, req)
        finally:
            self.residency.end(req.keep_alive_s)

    async def _serve(
        self, request: web.Request, record: RequestRecord, req: SimRequest
    ) -> web.StreamResponse:
        try:
            slot = await self.pool.acquire()
        except QueueFull:
            openai_api = record.endpoint.startswith("/v1/")
            raise openai.overloaded() if openai_api else ollama.error(503, ollama.BUSY) from None
        served = False
        try:
            plan = self._plan(req, record, slot, header_service_s=control.header_service_s(request))
            response = await send(request, plan)
            served = True
            return response
        finally:
            self.pool.release(slot, service_s=record.service_s if served else None)
            record.finished = time.time()

    def _load(self, req: SimRequest, *, chat: bool) -> web.Response:
        """An Ollama request with nothing to decode: load (or unload) the model, take no slot."""
        if req.action == "unload":
            self.residency.unload()
        else:
            self.residency.touch(req.keep_alive_s)
        return web.json_response(ollama.load_reply(req, chat=chat, created_at=go_timestamp()))

    def _plan(
        self, req: SimRequest, record: RequestRecord, slot: int, *, header_service_s: float | None
    ) -> Plan:
        config = self.config
        tokens = config.tokens_for(req.output_tokens)
        cut = tokens < config.default_output_tokens  # the answer would have been longer
        tokens = min(tokens, config.default_output_tokens)
        asked_s = req.service_s if req.service_s is not None else header_service_s
        if asked_s is None:
            service_s = config.service_s(kind=record.kind, output_tokens=tokens)
        else:  # asked of the kind's own hosts: an overflow host takes 1 / speed as long
            service_s = asked_s / config.speed_for(record.kind)
        record.slot, record.started, record.service_s = slot, time.time(), service_s
        record.real_service_s = service_s * config.time_scale
        record.model = req.model
        return Plan(
            req=req,
            endpoint=record.endpoint,
            wait_s=(record.started - record.arrived) / config.time_scale,
            prefill_s=min(config.base_for(record.kind), service_s),
            service_s=service_s,
            eval_tokens=tokens,
            time_scale=config.time_scale,
            finish_reason="length" if cut else "stop",
        )

    async def _http_status(self, _: web.Request) -> web.Response:
        return web.json_response(self._status())

    async def _http_records(self, _: web.Request) -> web.Response:
        return web.json_response([r.to_dict() for r in self._records])

    async def _http_reset(self, _: web.Request) -> web.Response:
        self._reset()
        return web.json_response(self._status())

    async def _http_heal(self, _: web.Request) -> web.Response:
        self._heal()
        return web.json_response({"faults": asdict(self.faults)})

    async def _http_fail(self, request: web.Request) -> web.StreamResponse:
        try:
            change = control.parse_fail(await request.read())
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.faults.update(
            error_rate=change.error_rate, latency_s=change.latency_s, hang=change.hang
        )
        if change.parallel is not None:
            self._set_parallel(change.parallel)
        if change.down is False:
            await self.go_up()
        response = web.json_response({"faults": {**asdict(self.faults), "down": change.goes_down}})
        if not change.goes_down:
            return response
        await response.prepare(request)  # answer first: going down drops this connection too
        await response.write_eof()
        await self.go_down(for_s=change.down_for_s)
        return response

    # -- helpers ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"sim host {self.name}: cannot listen on 127.0.0.1:{self._port}: {exc.strerror}"
            ) from exc
        self._site = site

    def _status(self) -> dict[str, Any]:
        pool = self.pool
        return {
            "host": self.name,
            "model": self.config.model,
            "kind": self.config.kind,
            "server": self.config.server,
            "url": self.url,
            "slots": pool.slots,
            "configured_slots": self.config.slots,
            "loaded": self.residency.loaded,
            "busy_slots": pool.busy,
            "queue_length": pool.queued,
            "max_queue": pool.max_queue,
            "served": pool.served,
            "rejected": pool.rejected,
            "busy_slot_s": pool.busy_slot_s(),
            "elapsed_s": pool.elapsed_s(),
            "utilisation": pool.utilisation(),
            "max_concurrency": pool.max_concurrency,
            "time_scale": self.config.time_scale,
            "since": pool.since,
            "faults": asdict(self.faults),
        }

    def _reset(self) -> None:
        self.pool.reset()
        self._records.clear()

    def _heal(self) -> None:
        self.faults.heal()
        self.pool.resize(self.config.server_parallel)

    def _set_parallel(self, parallel: int | None) -> None:
        self.faults.parallel = parallel
        self.pool.resize(self.config.server_parallel if parallel is None else parallel)
        log.info("sim host %s runs %s requests at once", self.name, self.pool.slots)

    def _cancel_revive(self) -> None:
        if self._revive is not None:
            self._revive.cancel()
            self._revive = None

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the serving loop (at once when there is none or we are on it)."""
        loop = self._loop
        if loop is None or not loop.is_running() or _on_loop(loop):
            return fn()

        async def wrapped() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapped(), loop).result(timeout=30)

    def _run(self, coro_fn: Callable[[], Awaitable[None]]) -> None:
        """Run a coroutine on the serving loop from another thread and wait for it."""
        loop = self._loop
        if loop is None or _on_loop(loop):
            raise RuntimeError(f"sim host {self.name}: await go_down()/go_up() on the loop instead")

        async def wrapped() -> None:
            await coro_fn()

        asyncio.run_coroutine_threadsafe(wrapped(), loop).result(timeout=30)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
