"""GPU memory and utilisation of this machine, through NVIDIA's NVML (``nvidia-ml-py``).

The library is the optional extra ``gpu`` (``pip install 'yggcelery[gpu]'``). No library, no
driver or no GPU is :class:`NoReading` with the reason, never an error: most machines that run
``ygg doctor`` have none, and the figure only describes servers on this machine.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Device:
    """One GPU: its name, memory in bytes, and the share of time its kernels ran (0..1)."""

    index: int
    name: str
    memory_used_bytes: int
    memory_total_bytes: int
    utilisation: float


@dataclass(frozen=True)
class NvmlReading:
    """Every GPU of this machine, read at one moment."""

    devices: tuple[Device, ...]

    @property
    def memory_used_bytes(self) -> int:
        return sum(d.memory_used_bytes for d in self.devices)

    @property
    def memory_total_bytes(self) -> int:
        return sum(d.memory_total_bytes for d in self.devices)

    @property
    def utilisation(self) -> float:
        """Mean utilisation over the devices (0..1)."""
        return sum(d.utilisation for d in self.devices) / len(self.devices)


@dataclass(frozen=True)
class NoReading:
    """Why there is no NVML reading (library missing, no driver, no GPU)."""

    reason: str


def read() -> NvmlReading | NoReading:
    """Read every GPU now, or say why not."""
    try:
        pynvml = importlib.import_module("pynvml")
    except ImportError:
        return NoReading("nvidia-ml-py is not installed (pip install 'yggcelery[gpu]')")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return NoReading(f"NVML unavailable: {exc}")
    try:
        count = pynvml.nvmlDeviceGetCount()
        devices = tuple(_device(pynvml, index) for index in range(count))
    except pynvml.NVMLError as exc:
        return NoReading(f"NVML read failed: {exc}")
    finally:
        _shutdown(pynvml)
    return NvmlReading(devices) if devices else NoReading("NVML sees no GPU")


def _device(pynvml: Any, index: int) -> Device:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
    name = pynvml.nvmlDeviceGetName(handle)
    return Device(
        index=index,
        name=name.decode() if isinstance(name, bytes) else str(name),
        memory_used_bytes=int(memory.used),
        memory_total_bytes=int(memory.total),
        utilisation=float(rates.gpu) / 100.0,
    )


def _shutdown(pynvml: Any) -> None:
    try:
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:  # pragma: no cover - the driver went away mid-read
        log.debug("nvmlShutdown: %s", exc)
