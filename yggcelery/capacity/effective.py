"""How many of a host's configured slots to fill now, from the latest reading (a pure policy).

A server that runs fewer requests at once than the configured slots, or one that keeps requests
waiting inside it while all our slots are taken, queues work where Beads priorities are lost.
Its effective slots drop to what it runs, and come back with the next reading that shows it
recovered. A reading that failed changes nothing here: a host that is down is the health
check's business, and guessing 1 would starve a host that only blinked.
"""

from __future__ import annotations

from yggcelery.capacity.reading import ServerReading


def effective_slots(configured: int, reading: ServerReading | None, *, in_flight: int) -> int:
    """The slots to fill on a host with ``configured`` slots and ``in_flight`` requests sent now.

    - the server reports or was measured to run fewer at once: that many (vLLM's KV figure is
      a floor for full-length requests, so only its waiting count lowers vLLM);
    - the server has requests waiting while ``in_flight`` fills our slots: what it runs now;
    - otherwise, or without a usable reading: ``configured``. Never below 1.
    """
    if reading is None or not reading.ok:
        return configured
    slots = configured
    found = reading.parallel
    if found is not None and reading.kind != "vllm" and found.slots < slots:
        slots = found.slots
    if reading.waiting and in_flight >= configured and reading.running is not None:
        slots = min(slots, reading.running)
    return max(1, slots)
