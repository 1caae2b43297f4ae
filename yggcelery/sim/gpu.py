"""The simulated GPU: a fixed number of decode slots, a bounded FIFO of waiting requests, stats.

``slots`` requests decode at once. Further requests wait in arrival order; when a slot frees it
is handed straight to the oldest waiter, so nothing overtakes. With ``max_queue`` requests
already waiting, one more is refused (:class:`QueueFull`), which the HTTP layer turns into 503.
Free slots are reused lowest index first, so a timeline drawn one row per slot stays compact.
:meth:`SlotPool.resize` changes the number of slots at run time, as a server restarted with
another parallelism would, without cutting off a request in flight.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import Callable


class QueueFull(Exception):
    """Raised when every slot is busy and ``max_queue`` requests already wait."""


class SlotPool:
    """``slots`` GPU decode slots with FIFO hand-off, utilisation and concurrency statistics.

    A finished request adds the simulated service time it was given (clipped to the time it
    really held its slot since the last reset); a slot held now adds its hold time so far. So
    utilisation = busy slot-seconds / (slots * elapsed) stays <= 1 and ignores the simulator's
    own HTTP overhead.
    Not thread-safe: use it from the event loop that serves the host.
    """

    def __init__(
        self,
        *,
        slots: int,
        max_queue: int,
        time_scale: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.time_scale = time_scale
        self._clock = clock
        self._free = list(range(slots))
        self._waiters: deque[asyncio.Future[int]] = deque()
        self._held_since: dict[int, float] = {}
        self.reset()

    def __repr__(self) -> str:
        return f"<SlotPool busy={self.busy}/{self.slots} queued={self.queued}>"

    def reset(self) -> None:
        """Zero the statistics; slots held now count from this moment on."""
        now = self._clock()
        self.since = now
        self.served = 0
        self.rejected = 0
        self._busy_s = 0.0
        self.max_concurrency = self.busy
        for slot in self._held_since:
            self._held_since[slot] = now

    @property
    def busy(self) -> int:
        return len(self._held_since)

    def busy_slots(self) -> list[int]:
        """Indexes of the slots decoding now, in order."""
        return sorted(self._held_since)

    def resize(self, slots: int) -> None:
        """Decode ``slots`` requests at once from now on.

        New slots go to the oldest waiters at once; removed ones stop taking work, and those busy
        finish what they hold. Utilisation is measured against the slot count of the moment.
        """
        if slots < 1:
            raise ValueError(f"slots must be >= 1, not {slots}")
        self.slots = slots
        self._free = [i for i in range(slots) if i not in self._held_since]
        heapq.heapify(self._free)
        self._hand_over()

    @property
    def queued(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def acquire(self) -> int:
        """A slot index, at once or after the requests queued before this one; FIFO."""
        if not self.queued and self._has_room():
            return self._take(heapq.heappop(self._free))
        if self.queued >= self.max_queue:
            self.rejected += 1
            raise QueueFull
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())
            raise

    def release(self, slot: int, *, service_s: float | None = None) -> None:
        """Give ``slot`` back after ``service_s`` simulated seconds of work (None: not served).

        The slot goes to the oldest waiter if there is one, else to the free list (unless a
        :meth:`resize` removed it).
        """
        started = self._held_since.pop(slot)
        held_s = (self._clock() - max(started, self.since)) / self.time_scale
        if service_s is not None:
            self._busy_s += min(service_s, held_s)
            self.served += 1
        if slot < self.slots:
            heapq.heappush(self._free, slot)
        self._hand_over()

    def busy_slot_s(self) -> float:
        """Simulated slot-seconds spent busy since the last reset, slots held now included."""
        now = self._clock()
        held = sum(now - max(start, self.since) for start in self._held_since.values())
        return self._busy_s + held / self.time_scale

    def elapsed_s(self) -> float:
        """Simulated seconds since the last reset."""
        return (self._clock() - self.since) / self.time_scale

    def utilisation(self) -> float:
        """Busy slot-seconds over available slot-seconds since the last reset (0..1)."""
        elapsed = self.elapsed_s()
        return self.busy_slot_s() / (self.slots * elapsed) if elapsed > 0 else 0.0

    def _has_room(self) -> bool:
        return bool(self._free) and self.busy < self.slots

    def _hand_over(self) -> None:
        """Give free slots to the oldest waiters, while there is room."""
        while self._waiters and self._has_room():
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._take(heapq.heappop(self._free)))

    def _take(self, slot: int) -> int:
        self._held_since[slot] = self._clock()
        self.max_concurrency = max(self.max_concurrency, self.busy)
        return slot
