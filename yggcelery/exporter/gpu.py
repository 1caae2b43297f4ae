"""GPU busy share per host, from the best source present.

In order:

1. a simulated host's ``/sim/status``, read at scrape time: its busy slot-seconds since the last
   scrape, an average over the scrape interval (better than any sample);
2. the host's live capacity reading (:mod:`yggcelery.capacity.live`): its worker probes the
   server from the host's own machine, so NVML there, else vLLM's KV cache use, llama.cpp's
   busy slots or Ollama's ``/api/ps``;
3. NVML here, for a server on the dispatcher's own machine;
4. an ESTIMATE: busy slots / slots, or 0 for an Ollama with no model loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from yggcelery.capacity import nvml
from yggcelery.capacity.live import LiveCapacity
from yggcelery.capacity.probe import on_this_machine
from yggcelery.settings import HostSettings

GPU_HELP = (
    "GPU busy share 0..1. For a simulated host the simulator's busy slot-seconds since the last"
    " scrape; else the host's worker's live reading (NVML on the host, vLLM KV cache use,"
    " llama.cpp busy slots, Ollama /api/ps); else NVML when the dispatcher runs on the host;"
    " otherwise an ESTIMATE: busy slots / slots (0 for an Ollama with no model loaded)"
)


@dataclass
class _SimSample:
    busy_slot_s: float
    elapsed_s: float


class GpuProbe:
    """GPU busy share per host from the best source present (see the module doc)."""

    def __init__(self, *, timeout_s: float = 1.0) -> None:
        self._http = httpx.Client(timeout=timeout_s)
        self._last: dict[str, _SimSample] = {}

    def __repr__(self) -> str:
        return f"<GpuProbe simulated={sorted(self._last)}>"

    def utilization(
        self, name: str, host: HostSettings, *, busy: int, live: LiveCapacity | None = None
    ) -> float | None:
        """0..1, or None when the host does not answer (no series is better than a made-up 0).

        ``busy`` is the tasks the host's worker runs now; ``live`` its fresh live reading.
        """
        sim = self._get_json(host.base_url + "/sim/status")
        if isinstance(sim, dict) and "busy_slot_s" in sim:
            return _clamp(self._from_sim(name, sim))
        if live is not None and live.gpu is not None:
            return _clamp(live.gpu)
        if on_this_machine(host.base_url):
            found = nvml.read()
            if isinstance(found, nvml.NvmlReading):
                return _clamp(found.utilisation)
        if host.dialect == "ollama":
            ps = self._get_json(host.base_url + "/api/ps")
            if not isinstance(ps, dict):
                return None
            return _clamp(busy / host.slots) if ps.get("models") else 0.0
        return _clamp(busy / host.slots)

    def _from_sim(self, name: str, status: dict[str, Any]) -> float:
        now = _SimSample(float(status["busy_slot_s"]), float(status["elapsed_s"]))
        last, self._last[name] = self._last.get(name), now
        span_s = now.elapsed_s - last.elapsed_s if last else 0.0
        if last is None or span_s <= 0 or now.busy_slot_s < last.busy_slot_s:
            return float(status["busy_slots"]) / float(status["slots"])
        return (now.busy_slot_s - last.busy_slot_s) / (float(status["slots"]) * span_s)

    def _get_json(self, url: str) -> Any:
        try:
            response = self._http.get(url)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def close(self) -> None:
        self._http.close()


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 1.0)
