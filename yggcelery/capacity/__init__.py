"""Capacity from the servers: what each host's model server really runs, and checks against it.

Configured ``slots`` are typed by hand; this package asks the servers. When a worker's
concurrency is above what the server runs at once, the extra requests queue inside the server,
first come first served, and Beads priorities are lost there; when it is below, a GPU idles.

- :func:`probe` (:mod:`.probe`) reads one host's server through its documented endpoints, one
  module per kind (:mod:`.llamacpp`, :mod:`.vllm`, :mod:`.ollama`, :mod:`.openai_compat`), into a
  :class:`ServerReading`; Ollama's parallelism is measured (:mod:`.measure`), GPU figures come
  from NVML when the server is on this machine (:mod:`.nvml`, the optional extra ``gpu``);
- :mod:`.doctor`: one :class:`~.doctor.Check` per thing a fleet needs (broker, backend,
  servers, models, parallelism vs slots, workers, cloud key), each failure with what to do;
- :mod:`.tune`: found vs configured per host, a suggested ``slots``, and
  :func:`~.tomledit.write_slots` to edit only those keys of ``ygg.toml``;
- :func:`effective_slots` (:mod:`.effective`): the slots to fill now, from the latest reading.

A probe never raises for a server that is down or answers garbage: the reading's ``error`` is one
line naming the host and the URL.
"""

from __future__ import annotations

from yggcelery.capacity.effective import effective_slots
from yggcelery.capacity.probe import detect, probe, probe_all
from yggcelery.capacity.reading import GpuUse, Parallelism, ServerKind, ServerReading

__all__ = [
    "GpuUse",
    "Parallelism",
    "ServerKind",
    "ServerReading",
    "detect",
    "effective_slots",
    "probe",
    "probe_all",
]
