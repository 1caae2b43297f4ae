"""The model-host simulator: real HTTP servers speaking Ollama and OpenAI, on simulated GPUs.

Each :class:`SimHost` stands in for one server (Ollama, llama.cpp, vLLM or a bare OpenAI API)
and serves its status endpoints truthfully; it decodes ``parallel`` requests at once (FIFO, 503
past ``max_queue`` waiting), which may differ from the configured ``slots`` and change at run
time, with service times per task kind scaled by ``time_scale``, injectable faults (down, error
rate, latency, hang, parallelism) and utilisation metrics. :class:`SimFleet` serves several
from one background thread; ``ygg sim`` and ``python -m yggcelery.sim`` serve the configured
fleet in the foreground.
"""

from __future__ import annotations

from yggcelery.sim.config import SimHostConfig
from yggcelery.sim.fleet import SimFleet
from yggcelery.sim.host import SimHost

__all__ = ["SimFleet", "SimHost", "SimHostConfig"]
