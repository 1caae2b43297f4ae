"""What llama.cpp's ``llama-server`` answers on its own endpoints, in its shapes.

From ``tools/server`` of llama.cpp (README and ``server-context.cpp``):

- ``GET /health``: ``{"status": "ok"}``;
- ``GET /props``: ``total_slots`` (``--parallel``), ``default_generation_settings.n_ctx`` (the
  context of one slot), ``model_path``, ``model_alias``, ``build_info``...;
- ``GET /slots``: one object per slot with ``id``, ``n_ctx`` and ``is_processing``;
- ``GET /metrics`` (only with ``--metrics``): Prometheus text with ``llamacpp:requests_processing``
  and ``llamacpp:requests_deferred`` (requests waiting for a slot), else 501;
- errors: ``{"error": {"code", "message", "type"}}``, e.g. 404 ``File Not Found`` /
  ``not_found_error``, 501 ``not_supported_error``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from yggcelery.sim.protocol import ApiError

BUILD_INFO = "b7000-yggsim"
METRICS_OFF = "This server does not support metrics endpoint. Start it with `--metrics`"


def error(status: int, message: str, kind: str) -> ApiError:
    """A llama-server error answer."""
    return ApiError(status, {"error": {"code": status, "message": message, "type": kind}})


def not_found() -> ApiError:
    return error(404, "File Not Found", "not_found_error")


def metrics_off() -> ApiError:
    return error(501, METRICS_OFF, "not_supported_error")


def model_path(model: str) -> str:
    return f"/models/{model.replace(':', '-')}.gguf"


def props(model: str, *, total_slots: int, n_ctx: int, metrics: bool) -> dict[str, Any]:
    """``GET /props``: the server's global properties."""
    return {
        "default_generation_settings": {
            "n_ctx": n_ctx,
            "params": {"n_predict": -1, "temperature": 0.8, "top_k": 40, "top_p": 0.95},
        },
        "total_slots": total_slots,
        "model_alias": model,
        "model_path": model_path(model),
        "modalities": {"vision": False, "video": False, "audio": False},
        "endpoint_slots": True,
        "endpoint_props": False,
        "endpoint_metrics": metrics,
        "chat_template": "{{ messages }}",
        "build_info": BUILD_INFO,
        "is_sleeping": False,
    }


def slots(*, total: int, busy: Iterable[int], n_ctx: int) -> list[dict[str, Any]]:
    """``GET /slots``: one entry per slot; ``is_processing`` for those decoding now."""
    processing = set(busy)
    return [
        {
            "id": slot,
            "id_task": -1,
            "n_ctx": n_ctx,
            "speculative": False,
            "is_processing": slot in processing,
            "params": {"n_predict": -1, "temperature": 0.8},
            "next_token": {"has_next_token": slot in processing, "n_remain": -1, "n_decoded": 0},
        }
        for slot in range(total)
    ]


def model_entry(model: str, *, created: int, n_ctx_train: int) -> dict[str, Any]:
    """One model as llama-server's ``/v1/models`` lists it."""
    return {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "llamacpp",
        "meta": {"n_ctx_train": n_ctx_train, "n_vocab": 49152, "n_params": 8_030_261_248},
    }


def families(*, processing: int, deferred: int) -> list[Metric]:
    """The ``llamacpp:*`` gauges of ``GET /metrics`` that say how busy the slots are."""
    running = GaugeMetricFamily(
        "llamacpp:requests_processing", "Number of requests processing", value=processing
    )
    waiting = GaugeMetricFamily(
        "llamacpp:requests_deferred", "Number of requests deferred", value=deferred
    )
    return [running, waiting]
