"""NVML GPU readings: no library and no GPU are "no reading", never an error.

This machine has no NVIDIA GPU, so the reading itself is checked against a stand-in ``pynvml``
module (an edge that cannot run here); the real library is used for the no-driver case.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from yggcelery.capacity import nvml


def test_without_the_library_there_is_no_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynvml not importable: NoReading that says how to install it."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    found = nvml.read()
    assert isinstance(found, nvml.NoReading) and "yggcelery[gpu]" in found.reason


def test_without_a_driver_there_is_no_reading() -> None:
    """The real nvidia-ml-py on a machine without the NVIDIA driver: NoReading, no exception."""
    pytest.importorskip("pynvml")
    found = nvml.read()
    assert isinstance(found, nvml.NoReading) and found.reason.startswith("NVML unavailable")


class _FakeNvml(SimpleNamespace):
    """Two GPUs as pynvml reports them (the calls nvml.read makes), for a machine without one."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        super().__init__(shut=False)

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=(handle + 1) * 2**30, total=24 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=[40, 80][handle])

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA RTX 4090"


def test_a_reading_sums_memory_and_averages_utilisation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two GPUs: memory used and total are summed, utilisation is the mean; NVML is shut down."""
    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    found = nvml.read()
    assert isinstance(found, nvml.NvmlReading) and fake.shut
    assert (found.memory_used_bytes, found.memory_total_bytes) == (3 * 2**30, 48 * 2**30)
    assert found.utilisation == pytest.approx(0.6)
    assert [d.name for d in found.devices] == ["NVIDIA RTX 4090"] * 2
