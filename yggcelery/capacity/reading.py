"""What a probe found out about one host's model server: one value, whatever the server kind.

A probe never raises for a server that answers badly or not at all: it returns a
:class:`ServerReading` whose ``error`` is one line naming the host and the URL, so a caller that
checks many hosts reports each and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: The model servers a probe knows (the setting ``server`` adds "auto").
ServerKind = Literal["ollama", "llamacpp", "vllm", "openai"]
#: How a parallelism is known: the server says it, or it was measured from overlapping requests.
HowKnown = Literal["reported", "measured"]


@dataclass(frozen=True, kw_only=True)
class Parallelism:
    """How many requests the server runs at once, and how that is known."""

    slots: int
    how: HowKnown
    #: Where the figure comes from, for people: ``/slots: 2 slots``, ``3 of 6 ran at once``.
    source: str
    #: Measured, and every request sent ran at once: the server may run more than ``slots``.
    at_least: bool = False

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else ''}{self.slots} ({self.how}: {self.source})"


@dataclass(frozen=True, kw_only=True)
class GpuUse:
    """How busy the GPU is, 0..1, and what says so (NVML, vLLM's KV cache, busy slots...)."""

    fraction: float
    source: str

    def __str__(self) -> str:
        return f"{self.fraction:.0%} ({self.source})"


@dataclass(frozen=True, kw_only=True)
class ServerReading:
    """One host's model server as a probe found it; ``error`` set means it could not tell."""

    host: str
    url: str
    #: None when the server could not be reached or recognised.
    kind: ServerKind | None = None
    #: The model the server says it serves (llama.cpp's alias, vLLM's id) or, for Ollama, the
    #: configured one when it is installed.
    model: str | None = None
    #: Whether the configured model is on the server / in memory now (None: unknown).
    installed: bool | None = None
    loaded: bool | None = None
    parallel: Parallelism | None = None
    #: Requests the server runs now and requests waiting inside it (its own queue).
    running: int | None = None
    waiting: int | None = None
    gpu: GpuUse | None = None
    #: Bytes of GPU memory the model takes (Ollama's ``size_vram``) or used on the GPU (NVML).
    vram_bytes: int | None = None
    #: Context window of one request, in tokens.
    context: int | None = None
    #: What could not be read without failing the probe (``/metrics`` off, ...), one line each.
    notes: tuple[str, ...] = field(default=())
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        if self.error is not None:
            return f"<ServerReading {self.host} error={self.error!r}>"
        return (
            f"<ServerReading {self.host} {self.kind} model={self.model} parallel="
            f"{self.parallel.slots if self.parallel else None} running={self.running}"
            f" waiting={self.waiting}>"
        )

    @classmethod
    def failed(
        cls, host: str, url: str, error: str, *, kind: ServerKind | None = None
    ) -> ServerReading:
        """The reading of a probe that could not tell: ``error`` is one line."""
        return cls(host=host, url=url, kind=kind, error=" ".join(error.split()))
