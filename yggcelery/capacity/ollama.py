"""Probe Ollama through its documented API, and measure its parallelism.

- ``GET /api/version``: that it is Ollama, and which;
- ``GET /api/tags``: whether the configured model is installed;
- ``GET /api/ps``: whether it is loaded, with ``size_vram`` / ``size`` (bytes in GPU memory, of
  the whole), ``context_length`` and ``expires_at``.

Ollama reports no slot count, and silently runs one request at a time when memory is short or
for some model architectures (ollama#17556, #14638), so the parallelism is measured
(:mod:`.measure`): a bare ``/api/generate`` loads the model, then ``requests`` short generations
go at once. Each asks for a few tokens, well under a second of GPU in all; it is only done when
asked (``ygg doctor``, ``ygg tune``), since it competes with real work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yggcelery.capacity.fetch import Target, bad_answer, reason
from yggcelery.capacity.measure import measure
from yggcelery.capacity.reading import GpuUse, Parallelism, ServerReading
from yggcelery.errors import HostError

MEASURE_PROMPT = "Count from one to ten."


@dataclass(frozen=True, kw_only=True)
class Measuring:
    """How to measure: requests sent at once, tokens each, and the longest wait for them."""

    requests: int
    tokens: int = 8
    timeout_s: float = 120.0


def probe(target: Target, *, measuring: Measuring | None = None) -> ServerReading:
    """Read ``target``'s Ollama (and measure it when ``measuring``); raises when it cannot."""
    version = target.get_json("/api/version")
    if not isinstance(version, dict) or "version" not in version:
        raise bad_answer(target, "/api/version", "no version: is this Ollama?")
    installed = _installed(target)
    notes: list[str] = []
    parallel = None
    if measuring is not None and installed:
        parallel = _measure(target, measuring, notes)
    elif measuring is not None:
        notes.append(f"model {target.host.model} is not installed: parallelism not measured")
    loaded = _loaded(target)
    return ServerReading(
        host=target.name,
        url=target.host.base_url,
        kind="ollama",
        model=target.host.model if installed else None,
        installed=installed,
        loaded=loaded is not None,
        parallel=parallel,
        gpu=_vram_share(loaded),
        vram_bytes=_int(loaded, "size_vram"),
        context=_int(loaded, "context_length"),
        notes=(f"Ollama {version['version']}", *notes),
    )


def measure_parallelism(target: Target, measuring: Measuring) -> Parallelism:
    """Load the model, then send ``measuring.requests`` short generations at once, twice."""
    model = target.host.model
    target.post_json("/api/generate", {"model": model}, timeout_s=measuring.timeout_s)
    body = {
        "model": model,
        "prompt": MEASURE_PROMPT,
        "stream": False,
        "options": {"num_predict": measuring.tokens, "temperature": 0},
    }
    return measure(
        lambda: target.post_json("/api/generate", body, timeout_s=measuring.timeout_s),
        requests=measuring.requests,
    )


def _measure(target: Target, measuring: Measuring, notes: list[str]) -> Parallelism | None:
    try:
        return measure_parallelism(target, measuring)
    except HostError as exc:
        notes.append(f"parallelism not measured: {reason(exc)}")
        return None


def _installed(target: Target) -> bool:
    tags = target.get_json("/api/tags")
    models = tags.get("models") if isinstance(tags, dict) else None
    if not isinstance(models, list):
        raise bad_answer(target, "/api/tags", "no model list")
    return any(_same(m, target.host.model) for m in models)


def _loaded(target: Target) -> dict[str, Any] | None:
    ps = target.get_json("/api/ps")
    models = ps.get("models") if isinstance(ps, dict) else None
    if not isinstance(models, list):
        raise bad_answer(target, "/api/ps", "no model list")
    return next((m for m in models if _same(m, target.host.model)), None)


def _same(entry: Any, model: str) -> bool:
    """Whether a listed model is ``model`` (case-insensitive; no tag means ``:latest``)."""
    if not isinstance(entry, dict):
        return False
    names = {_norm(str(entry.get(key, ""))) for key in ("name", "model")}
    return _norm(model) in names


def _norm(name: str) -> str:
    name = name.strip().lower()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _vram_share(loaded: dict[str, Any] | None) -> GpuUse | None:
    size, vram = _int(loaded, "size"), _int(loaded, "size_vram")
    if not size or vram is None:
        return None
    return GpuUse(
        fraction=min(1.0, vram / size), source="Ollama /api/ps: share of the model in VRAM"
    )


def _int(entry: dict[str, Any] | None, key: str) -> int | None:
    value = entry.get(key) if entry else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
