"""``ygg tune`` as a library: per host, what the server runs against the configured slots.

:func:`tune` probes every host (measuring Ollama), :func:`suggest` turns one reading into a
:class:`Tuning` (pure): the suggested ``slots`` is what the server really runs at once, capped at
the settings' limit of 64. :func:`toml_lines` prints the ``ygg.toml`` lines to paste;
:func:`~yggcelery.capacity.tomledit.write_slots` writes them into the file, changing nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from yggcelery.capacity.probe import probe_all
from yggcelery.capacity.reading import ServerReading
from yggcelery.capacity.tomledit import write_slots
from yggcelery.settings import HostSettings, Settings

#: The most slots a host may have (``HostSettings.slots``).
MAX_SLOTS = 64
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

__all__ = ["MAX_SLOTS", "Tuning", "suggest", "toml_lines", "tune", "write_slots"]


@dataclass(frozen=True, kw_only=True)
class Tuning:
    """One host: what was found, the slots configured, and the slots suggested (None: no idea)."""

    host: str
    configured: int
    reading: ServerReading
    suggested: int | None
    why: str

    @property
    def changes(self) -> bool:
        return self.suggested is not None and self.suggested != self.configured

    def line(self) -> str:
        """One line: found (kind, model, VRAM, context, parallel) vs configured, and the advice."""
        r = self.reading
        if not r.ok:
            return f"{self.host}: {r.error}"
        found = [str(r.kind), r.model or "model not served"]
        if r.vram_bytes:
            found.append(f"VRAM {r.vram_bytes / 2**30:.1f} GiB")
        if r.context:
            found.append(f"context {r.context}")
        found.append(f"parallel {r.parallel}" if r.parallel else "parallel unknown")
        advice = f"slots {self.configured} -> {self.suggested}" if self.changes else (
            f"slots {self.configured} (keep)" if self.suggested is not None else
            f"slots {self.configured} ({self.why})"
        )  # fmt: skip
        return f"{self.host}: {', '.join(found)}; {advice}"


def tune(
    settings: Settings, *, client: httpx.Client | None = None, measure: bool = True
) -> list[Tuning]:
    """Probe every host (measuring Ollama when ``measure``) and suggest its slots."""
    own = client is None
    http = client or httpx.Client()
    try:
        readings = probe_all(settings.hosts, http, capacity=settings.capacity, measure=measure)
    finally:
        if own:
            http.close()
    return [suggest(name, settings.hosts[name], reading) for name, reading in readings.items()]


def suggest(name: str, host: HostSettings, reading: ServerReading) -> Tuning:
    """The slots ``host`` should have, from what its server runs at once (pure)."""

    def tuning(suggested: int | None, why: str) -> Tuning:
        return Tuning(
            host=name, configured=host.slots, reading=reading, suggested=suggested, why=why
        )

    if not reading.ok:
        return tuning(None, "server not read")
    found = reading.parallel
    if found is None:
        return tuning(None, "parallelism unknown")
    slots = max(1, min(found.slots, MAX_SLOTS))
    why = f"the server runs {found}"
    if found.at_least:
        why += "; it may run more: measure with more requests (capacity.measure_requests)"
    if found.slots > MAX_SLOTS:
        why += f"; capped at {MAX_SLOTS}"
    return tuning(slots, why)


def toml_lines(tunings: Iterable[Tuning]) -> str:
    """The ``ygg.toml`` lines that set each suggested slots (one table per host)."""
    blocks = [
        f"[hosts.{_key(t.host)}]\nslots = {t.suggested}\n"
        for t in tunings
        if t.suggested is not None
    ]
    return "\n".join(blocks)


def _key(name: str) -> str:
    return (
        name
        if _BARE_KEY.fullmatch(name)
        else '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    )
