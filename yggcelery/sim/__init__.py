"""The model-host simulator: real HTTP servers speaking Ollama and OpenAI, on simulated GPUs.

Each :class:`SimHost` has ``slots`` decode slots (FIFO, 503 past ``max_queue`` waiting),
service times per task kind scaled by ``time_scale``, injectable faults (down, error rate,
latency, hang) and utilisation metrics. :class:`SimFleet` serves several from one background
thread; ``ygg sim`` and ``python -m yggcelery.sim`` serve the configured fleet in the foreground.
"""

from __future__ import annotations

from yggcelery.sim.config import SimHostConfig
from yggcelery.sim.fleet import SimFleet
from yggcelery.sim.host import SimHost

__all__ = ["SimFleet", "SimHost", "SimHostConfig"]
