"""The one interface and loop shape of every dispatcher.

A dispatcher's life is a loop of :meth:`Dispatcher.poll` calls, each of which first writes back
what finished (results, failures) and then sends ready issues to hosts that have room. It claims
an issue in Beads before any work starts, so two dispatchers never run one issue twice, and on
shutdown it hands back work that was claimed but not started (status ``open``), so stopping one
dispatcher and starting another (the rollback path) loses nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar, TypedDict

import redis
from kombu.exceptions import OperationalError

from yggcelery.errors import TransientError
from yggcelery.outcomes import BeadResult, hand_back, record_failure, record_success
from yggcelery.settings import Settings
from yggcelery.work.fate import Failure, Fate, fate

if TYPE_CHECKING:
    from yggcelery.beads import BeadsStore

log = logging.getLogger(__name__)

#: Failures of one poll that pass by themselves (the broker or Beads restarting): the loop logs
#: them and polls again, instead of dying and leaving the cluster without a dispatcher.
OUTAGES = (redis.ConnectionError, redis.TimeoutError, OperationalError, TransientError)


class HostStatus(TypedDict):
    """One host as a dispatcher sees it (the seed's ``get_status()`` shape, extended)."""

    slots: int
    active: int
    available_slots: int
    #: Tasks waiting for this host, by Beads priority ("p0".."p4").
    queued: dict[str, int]
    online: bool


def nap(
    seconds: float, *, watch_s: float, wake: Callable[[], bool], wait: Callable[[float], bool]
) -> None:
    """Return after ``seconds``, or once ``wait(step)`` returns True (stop, or a finished task)
    or ``wake()`` does, asked every ``watch_s`` (never when ``watch_s`` is 0)."""
    deadline = time.monotonic() + seconds
    step = watch_s if watch_s > 0 else seconds
    while (left := deadline - time.monotonic()) > 0:
        if wait(min(left, step)) or (watch_s > 0 and wake()):
            return


def format_status(status: dict[str, HostStatus]) -> str:
    """One log line: ``skadi-code 2/2 busy q=p0:1,p3:4 | ...``."""
    parts = []
    for host, st in status.items():
        queued = ",".join(f"{p}:{n}" for p, n in st["queued"].items() if n) or "0"
        online = "" if st["online"] else " OFFLINE"
        parts.append(f"{host} {st['active']}/{st['slots']} busy q={queued}{online}")
    return " | ".join(parts)


class Dispatcher(ABC):
    """Base of the Celery, asyncio and legacy dispatchers."""

    #: ``celery``, ``asyncio`` or ``legacy``: the name ``ygg loop`` and the benchmark use.
    name: ClassVar[str]

    def __init__(self, settings: Settings, store: BeadsStore) -> None:
        self.settings = settings
        self.store = store
        self.actor = settings.beads.actor
        #: Failed attempts per bead, for the dispatchers that run the work in process (the
        #: Celery path keeps them in its ledger): REQUEUE until ``max_attempts``, then BLOCK.
        self.failed_attempts: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} in_flight={self.in_flight()}>"

    @abstractmethod
    def poll(self) -> int:
        """Write back finished work, then dispatch ready issues; returns how many were sent."""

    @abstractmethod
    def in_flight(self) -> int:
        """Issues this dispatcher claimed whose outcome is not yet in Beads."""

    @abstractmethod
    def get_status(self) -> dict[str, HostStatus]:
        """``{host: {'active': n, 'available_slots': m, 'slots': s, 'queued': {...}, ...}}``."""

    @abstractmethod
    def shutdown(self, *, hand_back: bool = True) -> None:
        """Stop; with ``hand_back``, issues claimed but not started go back to ``open``."""

    def record_outcome(self, bead: str, done: Future[BeadResult]) -> None:
        """Write a finished in-process attempt into Beads: close it with its result, or decide
        what its error means with :func:`~yggcelery.work.fate.fate` (as reconcile does)."""
        exc = done.exception()
        if exc is None:
            record_success(self.store, done.result(), actor=self.actor)
            self.failed_attempts.pop(bead, None)
            return
        log.debug("%s failed", bead, exc_info=exc)
        self.record_failure(bead, exc)

    def record_failure(self, bead: str, exc: BaseException) -> None:
        """Requeue or block ``bead`` after its attempt ended with ``exc``."""
        verdict = fate(Failure.of(exc), try_no=None, failed_attempts=self.failed_attempts[bead],
                       retry=self.settings.retry)  # fmt: skip
        if verdict.fate is Fate.REQUEUE:
            self.failed_attempts[bead] += 1
            self.hand_back(bead, verdict.reason)
        else:
            self.failed_attempts.pop(bead, None)
            record_failure(self.store, bead, reason=verdict.reason, actor=self.actor)

    def hand_back(self, bead: str, note: str) -> None:
        """Give a claimed issue back to ``open`` with ``note``."""
        hand_back(self.store, bead, note=note, actor=self.actor)

    def prepare(self) -> None:  # noqa: B027 (an optional hook: most dispatchers need nothing)
        """Open connections and load what the first poll needs, so that the first poll after a
        start is as quick as any other. Idempotent; :meth:`run` calls it. No-op by default."""

    def nap(self, stop: threading.Event, seconds: float) -> None:
        """Wait between polls: ``seconds``, or less when ``stop`` is set, the Beads data changed
        (:meth:`beads_changed`) or, where a dispatcher can tell, work finished."""
        nap(seconds, watch_s=self.settings.dispatch.watch_s, wake=self.beads_changed,
            wait=stop.wait)  # fmt: skip

    def beads_changed(self) -> bool:
        """Someone else changed the Beads data since this dispatcher last read or wrote it."""
        try:
            return self.store.changed()
        except OSError:
            return False

    def idle(self) -> bool:
        """Nothing in flight and nothing ready in Beads: a run ``until_idle`` may stop."""
        return self.in_flight() == 0 and not self.store.ready(sort=self.settings.beads.sort)

    def run(self, *, stop: threading.Event | None = None, until_idle: bool = False) -> None:
        """The loop: poll, and after a poll that sent nothing sleep ``poll_s``; signals stop it.

        A signal only sets ``stop``: a poll in progress finishes, so an issue is never left
        claimed but unsent. Then :meth:`shutdown` hands back what was not started. A poll that
        fails on a broker or Beads outage (:data:`OUTAGES`) is retried at the next poll.
        """
        stop = stop or threading.Event()
        poll_s = self.settings.dispatch.poll_s
        log.info("%s dispatcher started: %r", self.name, self.settings)
        finished = threading.Event()
        reporter = threading.Thread(
            target=self._report_status, args=(finished,), name="ygg-status", daemon=True
        )
        with _stop_on_signals(stop):
            self.prepare()
            reporter.start()
            try:
                while not stop.is_set():
                    sent = 0
                    try:
                        sent = self.poll()
                        if until_idle and self.idle():
                            break
                    except OUTAGES as exc:
                        log.warning("%s dispatcher: poll failed, retrying: %r", self.name, exc)
                    if not sent:  # a poll that sent work polls again at once: hosts may have room
                        self.nap(stop, poll_s)
            finally:
                finished.set()
                self.shutdown(hand_back=True)
        log.info("%s dispatcher stopped", self.name)

    def _report_status(self, finished: threading.Event) -> None:
        """Log the per-host status every ``status_every_s``, off the polling thread (asking
        the workers takes a broadcast of up to a second, which must not stall dispatching)."""
        while not finished.wait(self.settings.dispatch.status_every_s):
            try:
                log.info("status: %s", format_status(self.get_status()))
            except Exception as exc:  # a status line is never worth stopping for
                log.warning("status unavailable: %r", exc)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM set ``stop`` instead of raising (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        log.info("signal %s: finishing the current poll, then stopping", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
