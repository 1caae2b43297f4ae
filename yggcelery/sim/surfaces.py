"""What a simulated host serves besides model calls, as the server it stands in for.

=========  ===================================================================================
server     endpoints (all GET unless said)
=========  ===================================================================================
ollama     ``/``, ``/api/version``, ``/api/tags``, ``/api/ps``, POST ``/api/show``,
           POST ``/api/embed`` (no slot taken), ``/v1/models``, ``/v1/models/{id}``
llamacpp   ``/health``, ``/v1/health``, ``/props``, ``/slots``, ``/models``, ``/v1/models``
vllm       ``/health``, ``/version``, ``/v1/models``
openai     ``/v1/models``, ``/v1/models/{id}``
=========  ===================================================================================

Every host has ``/metrics``: the simulator's own ``ygg_sim_*`` series, after llama.cpp's
``llamacpp:*`` (501 with metrics off, as ``llama-server`` without ``--metrics``) or vLLM's
``vllm:*``. Each answer is read from the live slot pool, so a probe sees the server's real
parallelism, which can differ from the configured slots. Unknown paths are 404 in the server's
own error shape (OpenAI's "Invalid URL" under ``/v1``), never plain text.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from yggcelery.sim import llamacpp, ollama, openai, vllm
from yggcelery.sim.config import SimHostConfig, SimServer
from yggcelery.sim.gpu import SlotPool
from yggcelery.sim.metrics import CONTENT_TYPE, HostMetrics, render_families
from yggcelery.sim.protocol import ApiError, go_timestamp
from yggcelery.sim.residency import Residency


class ServedHost(Protocol):
    """What the endpoints read of a host (a :class:`~yggcelery.sim.host.SimHost`)."""

    config: SimHostConfig
    pool: SlotPool
    residency: Residency
    metrics: HostMetrics
    started_at: str


Handler = Callable[[ServedHost, web.Request], Awaitable[web.StreamResponse]]
_Next = Callable[[web.Request], Awaitable[web.StreamResponse]]


def model_call_paths(server: SimServer) -> tuple[str, ...]:
    """The POST endpoints that run the model (take a slot) on ``server``."""
    openai_paths = ("/v1/chat/completions", "/v1/completions")
    return ("/api/chat", "/api/generate", *openai_paths) if server == "ollama" else openai_paths


def routes(server: SimServer) -> list[tuple[str, str, Handler]]:
    """``(method, path, handler)`` of every endpoint ``server`` has besides model calls."""
    return [*_ROUTES[server], ("GET", "/metrics", _metrics)]


def json_not_found(server: SimServer) -> Middleware:
    """A middleware answering unknown paths and methods with :func:`not_found`."""

    @web.middleware
    async def middleware(request: web.Request, handler: _Next) -> web.StreamResponse:
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            return not_found(server, request)

    return middleware


def not_found(server: SimServer, request: web.Request) -> web.Response:
    """The answer for a path (or method) ``server`` does not have."""
    if server == "llamacpp":
        refusal = llamacpp.not_found()
    elif server == "vllm":
        refusal = vllm.not_found()
    elif server == "ollama" and not request.path.startswith("/v1/"):
        refusal = ollama.error(404, "404 page not found")
    else:
        refusal = openai.invalid_url(request.method, request.path)
    return _refuse(refusal)


# -- Ollama -----------------------------------------------------------------------------------


async def _root(_: ServedHost, __: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def _version(_: ServedHost, __: web.Request) -> web.Response:
    return web.json_response({"version": ollama.VERSION})


async def _tags(host: ServedHost, _: web.Request) -> web.Response:
    entry = ollama.model_entry(host.config.model, modified_at=host.started_at)
    return web.json_response({"models": [entry]})


async def _ps(host: ServedHost, _: web.Request) -> web.Response:
    if not host.residency.loaded:
        return web.json_response({"models": []})
    expires_at = go_timestamp(host.residency.expires_at())
    entry = ollama.ps_entry(
        host.config.model, expires_at=expires_at, context_length=host.config.context_length
    )
    return web.json_response({"models": [entry]})


async def _embed(host: ServedHost, request: web.Request) -> web.Response:
    """``POST /api/embed``: vectors at once, no slot taken; the model counts as used."""
    try:
        model, texts, keep_alive_s = ollama.parse_embed(await request.read(), host.config.model)
    except ApiError as exc:
        return _refuse(exc)
    host.residency.touch(keep_alive_s)
    return web.json_response(ollama.embed_reply(model, texts, load_ns=1_000_000))


async def _show(host: ServedHost, request: web.Request) -> web.Response:
    try:
        model = ollama.parse_show(await request.read(), host.config.model)
    except ApiError as exc:
        return _refuse(exc)
    body = ollama.show(
        model, modified_at=host.started_at, context_length=host.config.context_length
    )
    return web.json_response(body)


# -- OpenAI-compatible model lists ------------------------------------------------------------


async def _models(host: ServedHost, _: web.Request) -> web.Response:
    config, created = host.config, int(time.time())
    if config.server == "llamacpp":
        entry = llamacpp.model_entry(
            config.model, created=created, n_ctx_train=config.context_length
        )
    elif config.server == "vllm":
        entry = vllm.model_entry(config.model, created=created, max_model_len=config.context_length)
    else:
        entry = openai.model_object(config.model, created=created, owned_by=_owner(config.server))
    return web.json_response(openai.models(entry))


async def _model(host: ServedHost, request: web.Request) -> web.Response:
    asked = request.match_info["model"]
    if asked != host.config.model:
        return _refuse(openai.model_not_found(asked))
    owner = _owner(host.config.server)
    return web.json_response(openai.model_object(asked, created=int(time.time()), owned_by=owner))


def _owner(server: SimServer) -> str:
    return "library" if server == "ollama" else "system"


# -- llama.cpp and vLLM -----------------------------------------------------------------------


async def _health(host: ServedHost, _: web.Request) -> web.Response:
    if host.config.server == "vllm":
        return web.Response(status=200)
    return web.json_response({"status": "ok"})


async def _props(host: ServedHost, _: web.Request) -> web.Response:
    config = host.config
    body = llamacpp.props(
        config.model,
        total_slots=host.pool.slots,
        n_ctx=config.context_length,
        metrics=config.metrics,
    )
    return web.json_response(body)


async def _slots(host: ServedHost, _: web.Request) -> web.Response:
    pool = host.pool
    body = llamacpp.slots(
        total=pool.slots, busy=pool.busy_slots(), n_ctx=host.config.context_length
    )
    return web.json_response(body)


async def _vllm_version(_: ServedHost, __: web.Request) -> web.Response:
    return web.json_response({"version": vllm.VERSION})


async def _metrics(host: ServedHost, _: web.Request) -> web.Response:
    config, pool = host.config, host.pool
    native = b""
    if config.server == "llamacpp":
        if not config.metrics:
            return _refuse(llamacpp.metrics_off())
        native = render_families(llamacpp.families(processing=pool.busy, deferred=pool.queued))
    elif config.server == "vllm":
        families = vllm.families(
            config.model,
            running=pool.busy,
            waiting=pool.queued,
            parallel=pool.slots,
            max_model_len=config.context_length,
        )
        native = render_families(families)
    body = native + host.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _refuse(refusal: ApiError) -> web.Response:
    return web.json_response(refusal.body, status=refusal.status)


_ROUTES: dict[SimServer, list[tuple[str, str, Handler]]] = {
    "ollama": [
        ("GET", "/", _root),
        ("GET", "/api/version", _version),
        ("GET", "/api/tags", _tags),
        ("GET", "/api/ps", _ps),
        ("POST", "/api/show", _show),
        ("POST", "/api/embed", _embed),
        ("GET", "/v1/models", _models),
        ("GET", "/v1/models/{model:.+}", _model),
    ],
    "llamacpp": [
        ("GET", "/health", _health),
        ("GET", "/v1/health", _health),
        ("GET", "/props", _props),
        ("GET", "/slots", _slots),
        ("GET", "/models", _models),
        ("GET", "/v1/models", _models),
    ],
    "vllm": [
        ("GET", "/health", _health),
        ("GET", "/version", _vllm_version),
        ("GET", "/v1/models", _models),
    ],
    "openai": [
        ("GET", "/v1/models", _models),
        ("GET", "/v1/models/{model:.+}", _model),
    ],
}
