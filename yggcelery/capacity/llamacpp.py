"""Probe llama.cpp's ``llama-server`` through its documented endpoints.

- ``GET /health``: 200 once the model is loaded (503 while loading);
- ``GET /props``: ``total_slots`` (``--parallel``), ``default_generation_settings.n_ctx`` (the
  context of one slot), ``model_alias`` / ``model_path``;
- ``GET /slots`` (on unless ``--no-slots``): one entry per slot that really exists, with
  ``is_processing``. Builds have started more slots than ``-np`` asked (llama.cpp#17300), so the
  slots listed win over ``total_slots`` and the difference is noted;
- ``GET /metrics`` (only with ``--metrics``): ``llamacpp:requests_processing`` and
  ``llamacpp:requests_deferred``, the requests waiting inside the server.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from yggcelery.capacity.fetch import Target, bad_answer, missing, reason
from yggcelery.capacity.reading import GpuUse, Parallelism, ServerReading
from yggcelery.errors import HostError


def probe(target: Target) -> ServerReading:
    """Read ``target``'s llama-server; raises the host's error when it cannot be read at all."""
    target.get("/health")
    props = target.get_json("/props")
    total = props.get("total_slots") if isinstance(props, dict) else None
    if not isinstance(total, int):
        raise bad_answer(target, "/props", "no total_slots: is this llama.cpp's llama-server?")
    notes: list[str] = []
    slots = _slots(target, notes)
    parallel = _parallelism(total, slots, notes)
    processing, deferred = _queue(target, notes)
    busy = sum(1 for s in slots if s.get("is_processing")) if slots is not None else processing
    return ServerReading(
        host=target.name,
        url=target.host.base_url,
        kind="llamacpp",
        model=_model(props),
        installed=True,
        loaded=True,
        parallel=parallel,
        running=processing if processing is not None else busy,
        waiting=deferred,
        gpu=_gpu(busy, parallel.slots),
        context=_n_ctx(props),
        notes=tuple(notes),
    )


def _slots(target: Target, notes: list[str]) -> list[dict[str, Any]] | None:
    try:
        slots = target.get_json("/slots")
    except HostError as exc:
        if not missing(exc):
            raise
        notes.append("GET /slots is off (--no-slots): parallelism from /props only")
        return None
    if not isinstance(slots, list):
        raise bad_answer(target, "/slots", "not a list of slots")
    return [s for s in slots if isinstance(s, dict)]


def _parallelism(total: int, slots: list[dict[str, Any]] | None, notes: list[str]) -> Parallelism:
    if slots is None:
        return Parallelism(slots=total, how="reported", source=f"/props total_slots {total}")
    if len(slots) != total:
        notes.append(f"/slots lists {len(slots)} slots but /props says total_slots {total}")
    return Parallelism(slots=len(slots), how="reported", source=f"/slots lists {len(slots)}")


def _queue(target: Target, notes: list[str]) -> tuple[int | None, int | None]:
    """``requests_processing`` and ``requests_deferred`` from ``/metrics``, if it is on."""
    try:
        samples = target.get_metrics()
    except HostError as exc:
        off = "GET /metrics is off: start llama-server with --metrics to see its queue"
        notes.append(off if missing(exc) else reason(exc))
        return None, None
    processing = samples.get("llamacpp:requests_processing")
    deferred = samples.get("llamacpp:requests_deferred")
    return (
        int(processing[0].value) if processing else None,
        int(deferred[0].value) if deferred else None,
    )


def _model(props: dict[str, Any]) -> str | None:
    alias = props.get("model_alias")
    if isinstance(alias, str) and alias:
        return alias
    path = props.get("model_path")
    return PurePosixPath(path).name if isinstance(path, str) and path else None


def _n_ctx(props: dict[str, Any]) -> int | None:
    settings = props.get("default_generation_settings")
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return n_ctx if isinstance(n_ctx, int) else None


def _gpu(busy: int | None, slots: int) -> GpuUse | None:
    if busy is None or slots < 1:
        return None
    return GpuUse(fraction=min(1.0, busy / slots), source="llama.cpp busy slots")
