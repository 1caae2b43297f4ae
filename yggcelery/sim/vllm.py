"""What vLLM's OpenAI server answers on its own endpoints, in its shapes.

- ``GET /health``: 200 with an empty body; ``GET /version``: ``{"version": "..."}``;
- ``GET /v1/models``: each model with ``max_model_len`` and ``owned_by: "vllm"``;
- ``GET /metrics``: ``vllm:num_requests_running`` and ``vllm:num_requests_waiting`` (labels
  ``model_name``, ``engine``), ``vllm:kv_cache_usage_perc`` (a fraction, 0..1) and the info gauge
  ``vllm:cache_config_info`` whose labels hold the KV cache layout (``block_size``,
  ``num_gpu_blocks``...). ``num_gpu_blocks * block_size / max_model_len`` is the number of
  full-length requests the cache holds at once, the figure vLLM logs as "Maximum concurrency";
- unknown paths: FastAPI's ``{"detail": "Not Found"}``.

The simulated cache holds exactly ``parallel`` full-context requests, and a running request is
counted as holding a full context, so KV use is busy / parallel.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from yggcelery.sim.protocol import ApiError

VERSION = "0.11.0"
BLOCK_SIZE = 16


def not_found() -> ApiError:
    return ApiError(404, {"detail": "Not Found"})


def model_entry(model: str, *, created: int, max_model_len: int) -> dict[str, Any]:
    """One model as vLLM's ``/v1/models`` lists it."""
    return {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": model,
        "parent": None,
        "max_model_len": max_model_len,
        "permission": [],
    }


def gpu_blocks(*, parallel: int, max_model_len: int) -> int:
    """KV cache blocks for ``parallel`` requests of ``max_model_len`` tokens."""
    return math.ceil(parallel * max_model_len / BLOCK_SIZE)


def families(
    model: str, *, running: int, waiting: int, parallel: int, max_model_len: int
) -> list[Metric]:
    """The ``vllm:*`` series of ``GET /metrics`` that say how full the engine is."""
    labels = {"model_name": model, "engine": "0"}

    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=list(labels))
        family.add_metric(list(labels.values()), value)
        return family

    info = {
        "block_size": str(BLOCK_SIZE),
        "num_gpu_blocks": str(gpu_blocks(parallel=parallel, max_model_len=max_model_len)),
        "cache_dtype": "auto",
        "enable_prefix_caching": "True",
        "gpu_memory_utilization": "0.9",
        "engine": "0",
    }
    cache = GaugeMetricFamily("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                              labels=list(info))  # fmt: skip
    cache.add_metric(list(info.values()), 1.0)
    return [
        gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
              running),
        gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
              waiting),
        gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
              running / parallel if parallel else 0.0),
        cache,
    ]  # fmt: skip
