"""GPU busy share per host, from the best source present (the simulator, NVML, Ollama)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from yggcelery.settings import HostSettings

GPU_HELP = (
    "GPU busy share 0..1. NVML when the dispatcher runs on the host itself; for a simulated host"
    " the simulator's busy slot-seconds since the last scrape; otherwise an ESTIMATE: busy slots"
    " / slots while the model is loaded (Ollama /api/ps), 0 when it is not"
)


@dataclass
class _SimSample:
    busy_slot_s: float
    elapsed_s: float


class GpuProbe:
    """GPU busy share per host: the simulator, NVML on this very host, else Ollama's ``/api/ps``."""

    def __init__(self, *, timeout_s: float = 1.0) -> None:
        self._http = httpx.Client(timeout=timeout_s)
        self._last: dict[str, _SimSample] = {}

    def utilization(self, name: str, host: HostSettings, *, busy: int) -> float | None:
        """0..1, or None when the host does not answer (no series is better than a made-up 0)."""
        sim = self._get_json(host.base_url + "/sim/status")
        if isinstance(sim, dict) and "busy_slot_s" in sim:
            return _clamp(self._from_sim(name, sim))
        if is_local(host.base_url):
            nvml = nvml_utilization()
            if nvml is not None:
                return _clamp(nvml)
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


def is_local(base_url: str) -> bool:
    """Whether ``base_url`` names this machine (loopback, or this machine's own name)."""
    name = urlsplit(base_url).hostname or ""
    if name in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return any(info[4][0] in ("127.0.0.1", "::1") for info in infos)


def nvml_utilization() -> float | None:
    """Mean GPU utilisation of this machine's NVIDIA GPUs (0..1), or None without NVML."""
    try:
        import pynvml  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            rates = [
                pynvml.nvmlDeviceGetUtilizationRates(pynvml.nvmlDeviceGetHandleByIndex(i)).gpu
                for i in range(count)
            ]
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None
    return sum(rates) / (100.0 * len(rates)) if rates else None
