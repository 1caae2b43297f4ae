"""The asyncio dispatcher: one event loop, per-host GPU slots, most urgent work first.

Each host gets a :class:`PrioritySlots` gate sized from its ``slots`` setting (2/3/2 on the seed
fleet), so no host ever runs more requests than its GPU decodes at once, and a waiter of
priority 0 is let in before any waiter of priority 3. Work starts with ``asyncio.create_task``
and never blocks the loop; when a task finishes, the loop polls again at once, so a freed slot
is refilled without waiting for ``poll_s``.

Where an issue goes and in which order the ready list is read are the same policy as the Celery
dispatcher's (:mod:`yggcelery.scheduling` through :mod:`yggcelery.dispatch.plan`): the host
where it is expected to finish first, overflow hosts included, most urgent first with aging; an
aged issue waits for its slot at its aged priority. Estimates are kept in this process
(:class:`~yggcelery.estimates.MemoryEstimates`), moved by each result written back.

The backlog stays in Beads: an issue is claimed only when a host that serves it has a free slot
or a place in its short local queue (``queue_per_host``, by default ``slots ×
(inflight_per_slot − 1)``, the same budget the Celery dispatcher keeps in the broker). The
local queue hides the Beads round trip (write back, read, claim) when a slot frees, and it cannot
delay urgent work: the ready list is read by priority, a waiter of priority 0 takes the next free
slot before any local waiter of priority 3, and when a host's queue is full a new, more urgent
issue *bumps* the least urgent local waiter (handed back to Beads, never started) to take its
place. So a p0 starts on the first slot that frees after it is ready.

Beads calls run in a thread, one at a time, so a slow store (the ``bd`` CLI) does not stall the
HTTP calls in flight.

The loop runs in a thread of its own: :meth:`AsyncDispatcher.poll` (the sync interface) hands a
``_poll`` to it, and :meth:`AsyncDispatcher.run` drives the same loop shape as a coroutine there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from typing import Any, TypeVar

import httpx

from yggcelery.beads import BeadsStore, Issue
from yggcelery.dispatch.base import Dispatcher, HostStatus, _stop_on_signals, format_status
from yggcelery.dispatch.plan import InFlight, Planner
from yggcelery.errors import ClaimConflict, ConfigError, TransientError
from yggcelery.estimates import Estimates, MemoryEstimates
from yggcelery.llm.breaker import CircuitState
from yggcelery.outcomes import BeadResult, record_success
from yggcelery.priority import Priority
from yggcelery.routing import candidate_hosts, kind_of
from yggcelery.settings import Settings
from yggcelery.work.order import WorkOrder
from yggcelery.work.perform import aperform
from yggcelery.work.resources import async_resources

log = logging.getLogger(__name__)
T = TypeVar("T")


class PrioritySlots:
    """A host's GPU slots: at most ``slots`` holders; waiters go most urgent first, then FIFO."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.active = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __repr__(self) -> str:
        return f"<PrioritySlots {self.active}/{self.slots} waiting={self.waiting()}>"

    def waiting(self) -> int:
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    def waiting_by_priority(self) -> dict[str, int]:
        counts = Priority.counts()
        for priority, _, fut in self._waiters:
            if not fut.done():
                counts[Priority.of(priority).label] += 1
        return counts

    @asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        """Hold one slot for the block; wait (by priority) while all are taken."""
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self.active < self.slots and not self.waiting():
            self.active += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # the slot was handed over as we were cancelled
                self._release()
            raise

    def _release(self) -> None:
        self.active -= 1
        while self._waiters and self.active < self.slots:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                self.active += 1
                fut.set_result(None)


class AsyncDispatcher(Dispatcher):
    """Per-host slots on one event loop, priority-aware; see the module docstring."""

    name = "asyncio"

    def __init__(
        self,
        settings: Settings,
        store: BeadsStore,
        *,
        queue_per_host: int | None = None,
        drain_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        estimates: Estimates | None = None,
    ) -> None:
        super().__init__(settings, store)
        spare = settings.dispatch.inflight_per_slot - 1
        self.queue = {
            name: int(host.slots * spare) if queue_per_host is None else queue_per_host
            for name, host in settings.hosts.items()
        }
        self.drain_s = drain_s
        self.slots = {name: PrioritySlots(host.slots) for name, host in settings.hosts.items()}
        self.resources = async_resources(settings, transport=transport)
        self.breaker = self.resources.breaker
        #: Expected service seconds per (host, kind), moved by each result written back.
        self.estimates = estimates or MemoryEstimates(settings)
        #: Bead id → its task, until the outcome is written into Beads.
        self._tasks: dict[str, asyncio.Task[BeadResult]] = {}
        #: Bead id → (its work order, claim sequence number), while its task exists.
        self._orders: dict[str, tuple[WorkOrder, int]] = {}
        self._claims = itertools.count()
        #: Beads taken out of the local queue for more urgent work, until handed back.
        self._bumped: set[str] = set()
        #: Beads whose task holds a slot (the request is on the host).
        self._running: set[str] = set()
        #: Bead id → when its task was started, then when it got its slot (Unix time).
        self._since: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._store_lock = asyncio.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the sync interface, served by the loop thread ------------------------------------------

    def poll(self) -> int:
        return self._call(self._poll())

    def in_flight(self) -> int:
        return len(self._tasks)

    def get_status(self) -> dict[str, HostStatus]:
        return {
            name: HostStatus(
                slots=gate.slots,
                active=gate.active,
                available_slots=max(gate.slots - gate.active, 0),
                queued=gate.waiting_by_priority(),
                online=self.breaker.state(name) is not CircuitState.OPEN,
            )
            for name, gate in self.slots.items()
        }

    def run(self, *, stop: threading.Event | None = None, until_idle: bool = False) -> None:
        """The loop shape of :meth:`Dispatcher.run`, as a coroutine on the dispatcher's loop."""
        stop = stop or threading.Event()
        log.info("%s dispatcher started (%s)", self.name, self.settings)
        with _stop_on_signals(stop):
            self.prepare()
            try:
                future = self._submit(self.run_async(stop=stop, until_idle=until_idle))
                while True:
                    try:
                        future.result(timeout=0.5)  # short waits: signals reach the handler
                        break
                    except concurrent.futures.TimeoutError:
                        continue
            finally:
                self.shutdown(hand_back=True)
        log.info("%s dispatcher stopped", self.name)

    def shutdown(self, *, hand_back: bool = True) -> None:
        """Hand back work not started; await running work up to ``drain_s``, then hand it back."""
        if self._closed:
            return
        if self._thread is not None:
            self._call(self._shutdown(hand_back=hand_back))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        else:
            self._loop.run_until_complete(self.resources.client.aclose())
        self._closed = True
        self._loop.close()

    # -- the loop ----------------------------------------------------------------------------------

    async def run_async(self, *, stop: threading.Event, until_idle: bool = False) -> None:
        """Poll, log status now and then, nap ``poll_s`` or until a task finishes or the Beads
        data changes."""
        next_status = 0.0
        while not stop.is_set():
            try:
                await self._poll()
            except TransientError as exc:  # Beads busy or restarting: the next poll tries again
                log.warning(
                    "poll failed, retrying after %.1fs: %s", self.settings.dispatch.poll_s, exc
                )
            if time.monotonic() >= next_status:
                log.info("status: %s", format_status(self.get_status()))
                next_status = time.monotonic() + self.settings.dispatch.status_every_s
            if until_idle and await self._idle():
                break
            await self._nap(self.settings.dispatch.poll_s, stop=stop)

    async def _nap(self, seconds: float, *, stop: threading.Event) -> None:
        """Until ``seconds`` pass, a task finishes, ``stop`` is set or the Beads data changes
        (the last two looked at every ``watch_s``, at most every 0.5 s)."""
        watch_s = self.settings.dispatch.watch_s
        step = min(watch_s, 0.5) if watch_s > 0 else 0.5
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(left, step))
                return
            if watch_s and self.beads_changed():
                return

    async def _poll(self) -> int:
        self._wake.clear()
        await self._write_back()
        room = self._room()
        if self._full(room):
            return 0
        sent = 0
        ready = await self._store(self.store.ready, sort=self.settings.beads.sort)
        times = self.estimates.table()
        planner = Planner.build(self.settings, flights=self._flights(), ready=ready, times=times)
        for issue, priority in planner.order:
            choice, kind = planner.choose(issue, priority=priority, room=room, down=self._down())
            host = choice.host if choice is not None else self._bump_for(issue, priority)
            if choice is not None:
                room[choice.host] -= 1  # choose_host only picks a host with room
            if host is None or not await self._claim(issue):
                continue
            planner.sent(issue, host=host, kind=kind, priority=priority)
            self._start(issue, host, priority=priority)
            sent += 1
            if self._full(room):
                break
        return sent

    def _full(self, room: dict[str, int]) -> bool:
        """No host has room and no local waiter could make way: reading Beads is pointless."""
        return all(n <= 0 for n in room.values()) and not any(
            bead not in self._running and not task.done() and not task.cancelling()
            for bead, task in self._tasks.items()
        )

    def _room(self) -> dict[str, int]:
        """Issues each host may take now: free slots plus the local queue allowance."""
        return {
            name: gate.slots + self.queue[name] - gate.active - gate.waiting()
            for name, gate in self.slots.items()
        }

    def _candidates(self, issue: Issue) -> list[str]:
        """The up hosts that serve ``issue``'s kind."""
        try:
            candidates = candidate_hosts(kind_of(issue, self.settings), self.settings)
        except ConfigError as exc:
            log.warning("%s: %s; left in the queue", issue.id, exc)
            return []
        return [n for n in candidates if self.breaker.state(n) is not CircuitState.OPEN]

    def _down(self) -> set[str]:
        """Hosts whose circuit breaker is open."""
        return {n for n in self.settings.hosts if self.breaker.state(n) is CircuitState.OPEN}

    def _flights(self) -> list[InFlight]:
        """The tasks not written back yet, as the planner sees them."""
        return [
            InFlight(
                host=order.host,
                kind=order.kind,
                priority=order.priority,
                since=self._since.get(bead, 0.0),
                running=bead in self._running,
            )
            for bead, (order, _) in self._orders.items()
            if not self._tasks[bead].done()
        ]

    def _bump_for(self, issue: Issue, priority: int) -> str | None:
        """Hand back the least urgent local waiter less urgent than ``issue`` (at ``priority``,
        aging included) on one of its own hosts; that host, or None."""
        candidates = self._candidates(issue)
        waiters = [
            (order.priority, seq, bead)
            for bead, (order, seq) in self._orders.items()
            if bead not in self._running
            and not self._tasks[bead].done()
            and not self._tasks[bead].cancelling()
            and order.host in candidates
            and order.priority > priority
        ]
        if not waiters:
            return None
        _, _, bead = max(waiters)
        self._tasks[bead].cancel()  # handed back by the next write-back; it never started
        self._bumped.add(bead)
        log.info("%s (p%s) bumps %s from the local queue", issue.id, priority, bead)
        return self._orders[bead][0].host

    async def _claim(self, issue: Issue) -> bool:
        try:
            await self._store(self.store.claim, issue.id, actor=self.actor)
        except ClaimConflict as exc:
            log.info("%s: %s", issue.id, exc)
            return False
        return True

    def _start(self, issue: Issue, host: str, *, priority: int) -> None:
        """Start ``issue``'s task on ``host``; it waits for a slot at ``priority`` (aged)."""
        order = WorkOrder.for_issue(issue, kind=kind_of(issue, self.settings), host=host)
        order = replace(order, priority=priority)
        self._since[issue.id] = time.time()
        task = asyncio.create_task(self._run_bead(order), name=order.task_id)
        task.add_done_callback(lambda _: self._wake.set())
        self._tasks[issue.id] = task
        self._orders[issue.id] = (order, next(self._claims))
        log.info("%s → %s (p%s)", issue.id, host, order.priority)

    async def _run_bead(self, order: WorkOrder) -> BeadResult:
        async with self.slots[order.host].slot(order.priority):
            self._running.add(order.bead_id)
            self._since[order.bead_id] = time.time()
            try:
                return await aperform(order, self.resources)
            finally:
                self._running.discard(order.bead_id)

    async def _write_back(self, *, hand_back_cancelled: bool = True) -> None:
        """Write the outcome of every finished task into Beads (cancelled ones are handed back)."""
        for bead, task in list(self._tasks.items()):
            if not task.done():
                continue
            del self._tasks[bead]
            self._orders.pop(bead, None)
            self._since.pop(bead, None)
            if task.cancelled():
                if bead in self._bumped:
                    self._bumped.discard(bead)
                    note = "made way for more urgent work before it started"
                    await self._store(self.hand_back, bead, note)
                elif hand_back_cancelled:
                    note = "dispatcher stopped before the task finished"
                    await self._store(self.hand_back, bead, note)
            elif (exc := task.exception()) is not None:
                await self._store(self.record_failure, bead, exc)
            else:
                result = task.result()
                if not result.via_cloud:
                    self.estimates.observe(result.host, result.kind, result.total_s)
                await self._store(record_success, self.store, result, actor=self.actor)
                self.failed_attempts.pop(bead, None)

    async def _idle(self) -> bool:
        if self._tasks:
            return False
        return not await self._store(self.store.ready, sort=self.settings.beads.sort)

    async def _shutdown(self, *, hand_back: bool) -> None:
        waiting = [t for b, t in self._tasks.items() if b not in self._running and not t.done()]
        for task in waiting:
            task.cancel()
        running = [t for b, t in self._tasks.items() if b in self._running]
        if running:
            log.info("waiting up to %.0fs for %d running task(s)", self.drain_s, len(running))
            await asyncio.wait(running, timeout=self.drain_s)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await self._write_back(hand_back_cancelled=hand_back)
        await self.resources.client.aclose()

    # -- plumbing ----------------------------------------------------------------------------------

    async def _store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A Beads call in a worker thread, one at a time (the store is not async)."""
        async with self._store_lock:
            return await asyncio.to_thread(fn, *args, **kwargs)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._closed:
            coro.close()
            raise RuntimeError("the asyncio dispatcher is shut down")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="ygg-asyncio", daemon=True
            )
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._submit(coro).result()
