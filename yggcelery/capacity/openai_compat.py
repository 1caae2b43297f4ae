"""Probe a bare OpenAI-compatible server (``server = "openai"``): only ``/v1`` is known.

``GET /v1/models`` says whether the configured model is served. Nothing reports how many
requests run at once, so, when asked, it is measured as for Ollama (:mod:`.measure`) with short
``/v1/chat/completions`` calls.
"""

from __future__ import annotations

from yggcelery.capacity.fetch import Target, bad_answer, reason
from yggcelery.capacity.measure import measure
from yggcelery.capacity.ollama import MEASURE_PROMPT, Measuring
from yggcelery.capacity.reading import Parallelism, ServerReading
from yggcelery.errors import HostError


def probe(target: Target, *, measuring: Measuring | None = None) -> ServerReading:
    """Read ``target``'s model list (and measure it when ``measuring``)."""
    models = target.get_json("/v1/models")
    data = models.get("data") if isinstance(models, dict) else None
    if not isinstance(data, list):
        raise bad_answer(target, "/v1/models", "no model list")
    served = [str(m.get("id")) for m in data if isinstance(m, dict)]
    installed = target.host.model in served
    notes: list[str] = []
    if not installed:
        notes.append(f"model {target.host.model} is not served (serving: {', '.join(served)})")
    parallel = None
    if measuring is not None and installed:
        try:
            parallel = measure_parallelism(target, measuring)
        except HostError as exc:
            notes.append(f"parallelism not measured: {reason(exc)}")
    return ServerReading(
        host=target.name,
        url=target.host.base_url,
        kind="openai",
        model=target.host.model if installed else None,
        installed=installed,
        loaded=installed,
        parallel=parallel,
        notes=tuple(notes),
    )


def measure_parallelism(target: Target, measuring: Measuring) -> Parallelism:
    """Send ``measuring.requests`` short chat completions at once (see :func:`.measure`)."""
    body = {
        "model": target.host.model,
        "messages": [{"role": "user", "content": MEASURE_PROMPT}],
        "max_tokens": measuring.tokens,
        "temperature": 0,
    }

    def send() -> object:
        return target.post_json("/v1/chat/completions", body, timeout_s=measuring.timeout_s)

    return measure(send, requests=measuring.requests)
