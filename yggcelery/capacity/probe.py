"""One entry point for every server kind: :func:`probe` a host, or :func:`probe_all` of them.

The kind comes from the host's ``server`` setting, or, with ``"auto"``, from the first
documented endpoint that answers as only that server does::

    GET /api/version  {"version": ...}                 Ollama
    GET /props        {"total_slots": ...}             llama.cpp llama-server
    GET /v1/models    entries with max_model_len       vLLM
    GET /v1/models    any other model list             a bare OpenAI-compatible server

A host that cannot be reached stops there (no three timeouts in a row); one that answers garbage
on all three is "no known model server". GPU use comes from the best source present: NVML for a
server on this machine, vLLM's KV cache, llama.cpp's busy slots, the simulator's
``/sim/status``, then Ollama's share of the model in VRAM.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import httpx

from yggcelery.capacity import llamacpp, nvml, ollama, openai_compat, vllm
from yggcelery.capacity.fetch import Target, missing, reason
from yggcelery.capacity.measure import requests_for
from yggcelery.capacity.ollama import Measuring
from yggcelery.capacity.reading import GpuUse, ServerKind, ServerReading
from yggcelery.errors import HostError, HostUnavailable
from yggcelery.settings import CapacitySettings, HostSettings, redact_url

log = logging.getLogger(__name__)


def probe(
    name: str,
    host: HostSettings,
    client: httpx.Client,
    *,
    capacity: CapacitySettings | None = None,
    measure: bool = False,
    local_gpu: bool | None = None,
) -> ServerReading:
    """What ``host``'s server says about itself; never raises for a bad or absent server.

    ``measure`` also measures the parallelism of servers that do not report it (Ollama, bare
    OpenAI), which sends a few short requests. ``local_gpu`` (default: the URL names this
    machine) reads NVML for the GPU figures.
    """
    capacity = capacity or CapacitySettings()
    target = Target(name, host, client, capacity.timeout_s)
    kind: ServerKind | None = None if host.server == "auto" else host.server
    try:
        kind = kind or detect(target)
        reading = _read(target, kind, _measuring(host, capacity) if measure else None)
    except HostError as exc:
        return ServerReading.failed(name, host.base_url, str(exc), kind=kind)
    local = on_this_machine(host.base_url) if local_gpu is None else local_gpu
    return _with_gpu(reading, target, local=local)


def probe_all(
    hosts: Mapping[str, HostSettings],
    client: httpx.Client,
    *,
    capacity: CapacitySettings | None = None,
    measure: bool = False,
) -> dict[str, ServerReading]:
    """:func:`probe` every host at once (one thread each); in the order given."""
    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="ygg-probe") as pool:
        futures = {
            name: pool.submit(probe, name, host, client, capacity=capacity, measure=measure)
            for name, host in hosts.items()
        }
        return {name: future.result() for name, future in futures.items()}


def detect(target: Target) -> ServerKind:
    """The kind of server at ``target``, from its documented endpoints (see the module doc)."""
    first_failure: HostError | None = None
    for path, recognise in _SIGNS:
        try:
            body = target.get_json(path)
        except HostUnavailable:
            raise
        except HostError as exc:
            first_failure = first_failure or (None if missing(exc) else exc)
            continue
        kind = recognise(body)
        if kind is not None:
            return kind
    url = redact_url(target.host.base_url)
    detail = f" ({reason(first_failure)})" if first_failure else ""
    raise HostError(target.name, f"no Ollama, llama.cpp, vLLM or OpenAI API at {url}{detail}")


def on_this_machine(base_url: str) -> bool:
    """Whether ``base_url`` names this machine (loopback, or this machine's own name)."""
    name = urlsplit(base_url).hostname or ""
    if name in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return any(info[4][0] in ("127.0.0.1", "::1") for info in infos)


def _read(target: Target, kind: ServerKind, measuring: Measuring | None) -> ServerReading:
    if kind == "llamacpp":
        return llamacpp.probe(target)
    if kind == "vllm":
        return vllm.probe(target)
    if kind == "ollama":
        return ollama.probe(target, measuring=measuring)
    return openai_compat.probe(target, measuring=measuring)


def _measuring(host: HostSettings, capacity: CapacitySettings) -> Measuring:
    return Measuring(
        requests=requests_for(host.slots, capacity.measure_requests),
        tokens=capacity.measure_tokens,
        timeout_s=capacity.measure_timeout_s,
    )


def _openai_kind(body: Any) -> ServerKind | None:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    entries = [m for m in data if isinstance(m, dict)]
    if any("max_model_len" in m or m.get("owned_by") == "vllm" for m in entries):
        return "vllm"
    return "openai"


def _with_gpu(reading: ServerReading, target: Target, *, local: bool) -> ServerReading:
    """``reading`` with the GPU figures of the best source present."""
    if local:
        found = nvml.read()
        if isinstance(found, nvml.NvmlReading):
            use = GpuUse(fraction=found.utilisation, source="NVML")
            return replace(
                reading, gpu=use, vram_bytes=reading.vram_bytes or found.memory_used_bytes
            )
        log.debug("host %s: no NVML reading: %s", target.name, found.reason)
    if reading.kind in ("vllm", "llamacpp") and reading.gpu is not None:
        return reading
    simulated = _simulator(target)
    return replace(reading, gpu=simulated) if simulated is not None else reading


def _simulator(target: Target) -> GpuUse | None:
    """Busy slots over slots from the simulator's ``/sim/status``; None from a real server."""
    try:
        status = target.get_json("/sim/status")
    except HostError:
        return None
    try:
        fraction = float(status["busy_slots"]) / float(status["slots"])
    except (TypeError, KeyError, ValueError, ZeroDivisionError):
        return None
    return GpuUse(fraction=min(1.0, fraction), source="simulator busy slots")


def _ollama_kind(body: Any) -> ServerKind | None:
    return "ollama" if isinstance(body, dict) and "version" in body else None


def _llamacpp_kind(body: Any) -> ServerKind | None:
    return "llamacpp" if isinstance(body, dict) and "total_slots" in body else None


#: ``(path, recognise)``: what each kind answers that no other does, tried in this order.
_SIGNS: tuple[tuple[str, Callable[[Any], ServerKind | None]], ...] = (
    ("/api/version", _ollama_kind),
    ("/props", _llamacpp_kind),
    ("/v1/models", _openai_kind),
)
