"""Whether the host's model is loaded, as Ollama's scheduler keeps it (what ``/api/ps`` lists).

A model loads with its first request, stays while requests run, and for ``keep_alive`` after the
last one ends; the latest request's ``keep_alive`` sets the time (0 unloads at once, negative
keeps it forever). Times are real seconds, like ``down_for_s``: keep_alive is a wall-clock
promise to the operator, not simulated GPU work.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Residency:
    """The loaded state of one model: requests running now and when it unloads when idle."""

    def __init__(self, *, keep_alive_s: float, clock: Callable[[], float] = time.time) -> None:
        self.keep_alive_s = keep_alive_s
        self._clock = clock
        self._running = 0
        self._until: float | None = None

    def __repr__(self) -> str:
        return f"<Residency loaded={self.loaded} running={self._running}>"

    def begin(self) -> None:
        """A request started using the model (it is loaded from now on)."""
        self._running += 1

    def end(self, keep_alive_s: float | None) -> None:
        """A request ended; the model stays for its ``keep_alive`` (None: the default)."""
        self._running = max(0, self._running - 1)
        self.touch(keep_alive_s)

    def touch(self, keep_alive_s: float | None) -> None:
        """Load the model now (or keep it) for ``keep_alive_s`` after this moment."""
        keep = self.keep_alive_s if keep_alive_s is None else keep_alive_s
        self._until = self._clock() + keep

    def unload(self) -> None:
        """Unload once idle (``keep_alive: 0`` on an empty request)."""
        self._until = None

    @property
    def loaded(self) -> bool:
        return self._running > 0 or (self._until is not None and self._clock() < self._until)

    def expires_at(self) -> float:
        """When the model unloads if no request comes (epoch seconds); while busy, the default."""
        if self._running or self._until is None:
            return self._clock() + self.keep_alive_s
        return self._until
