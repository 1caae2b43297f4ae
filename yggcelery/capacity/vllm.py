"""Probe vLLM's OpenAI server through its documented endpoints.

- ``GET /v1/models``: the served models, each with ``max_model_len``;
- ``GET /metrics``: ``vllm:num_requests_running`` and ``vllm:num_requests_waiting`` (requests in
  the batch, and queued inside vLLM), ``vllm:kv_cache_usage_perc`` (0..1; before vLLM 0.10
  ``vllm:gpu_cache_usage_perc``) and ``vllm:cache_config_info``, whose labels give the KV cache
  size: ``num_gpu_blocks * block_size / max_model_len`` full-length requests fit at once, the
  "Maximum concurrency" vLLM logs at start. That is the parallelism reported here: shorter
  requests can run more, so it is a floor.
"""

from __future__ import annotations

from typing import Any

from yggcelery.capacity.fetch import Sample, Target, bad_answer, missing, reason
from yggcelery.capacity.reading import GpuUse, Parallelism, ServerReading
from yggcelery.errors import HostError

_KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def probe(target: Target) -> ServerReading:
    """Read ``target``'s vLLM server; raises the host's error when it cannot be read at all."""
    models = target.get_json("/v1/models")
    data = models.get("data") if isinstance(models, dict) else None
    if not isinstance(data, list):
        raise bad_answer(target, "/v1/models", "no model list")
    entry = _entry(data, target.host.model)
    notes: list[str] = []
    if entry is None:
        served = ", ".join(str(m.get("id")) for m in data if isinstance(m, dict)) or "none"
        notes.append(f"model {target.host.model} is not served (serving: {served})")
    max_len = entry.get("max_model_len") if entry else None
    context = max_len if isinstance(max_len, int) else None
    samples = _metrics(target, notes)
    mine = {name: _of_model(s, target.host.model) for name, s in samples.items()}
    kv = next((mine[name] for name in _KV_USAGE if mine.get(name)), None)
    return ServerReading(
        host=target.name,
        url=target.host.base_url,
        kind="vllm",
        model=str(entry["id"]) if entry else None,
        installed=entry is not None,
        loaded=entry is not None,
        parallel=_capacity(samples.get("vllm:cache_config_info"), context),
        running=_total(mine.get("vllm:num_requests_running")),
        waiting=_total(mine.get("vllm:num_requests_waiting")),
        gpu=GpuUse(fraction=min(1.0, kv[0].value), source="vLLM KV cache use") if kv else None,
        context=context,
        notes=tuple(notes),
    )


def _entry(data: list[Any], model: str) -> dict[str, Any] | None:
    for entry in data:
        if isinstance(entry, dict) and entry.get("id") == model:
            return entry
    return None


def _metrics(target: Target, notes: list[str]) -> dict[str, list[Sample]]:
    try:
        return target.get_metrics()
    except HostError as exc:
        why = "is not served" if missing(exc) else f"failed ({reason(exc)})"
        notes.append(f"GET /metrics {why}: no running/waiting counts")
        return {}


def _of_model(samples: list[Sample], model: str) -> list[Sample]:
    """The samples labelled with ``model`` (all of them when none is labelled)."""
    labelled = [s for s in samples if "model_name" in s.labels]
    return [s for s in labelled if s.labels["model_name"] == model] if labelled else samples


def _total(samples: list[Sample] | None) -> int | None:
    return int(sum(s.value for s in samples)) if samples else None


def _capacity(info: list[Sample] | None, max_model_len: int | None) -> Parallelism | None:
    if not info or not max_model_len:
        return None
    try:
        blocks = sum(int(s.labels["num_gpu_blocks"]) for s in info)
        block_size = int(info[0].labels["block_size"])
    except (KeyError, ValueError):
        return None  # an older vLLM, or num_gpu_blocks="None" before the cache is sized
    slots = blocks * block_size // max_model_len
    source = f"KV cache: {blocks} blocks x {block_size} tokens / max_model_len {max_model_len}"
    return Parallelism(slots=slots, how="reported", source=source) if slots >= 1 else None
