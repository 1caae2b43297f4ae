"""Wake the Celery dispatcher when one of its tasks stores an outcome, not at its next poll.

Celery's Redis result backend publishes every result it stores on a channel named after the
result's key (``celery-task-meta-<task id>``). A pattern subscription to the channels of
yggcelery's task ids sets an event when the result is an outcome (not the STARTED state each
task stores as it begins: that frees no slot, and would cost a poll per task), and the
dispatcher's loop naps until the event is set or ``poll_s`` has passed: a finished bead reaches
Beads, and its host's next bead the broker, within milliseconds instead of up to ``poll_s``
later, while an idle cluster still costs one poll per ``poll_s``.

The subscription only saves latency. While it is down (Redis restarting) the loop polls as
before; redis-py subscribes again when it reconnects.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, states
from redis.client import PubSub, PubSubWorkerThread

from yggcelery.connections import redis_for
from yggcelery.dispatch.base import nap
from yggcelery.routing import TASK_ID_PREFIX
from yggcelery.settings import Settings

log = logging.getLogger(__name__)


#: States a task stores on its way, before any outcome (``task_track_started`` stores STARTED).
_NOT_OUTCOMES = frozenset({states.PENDING, states.RECEIVED, states.STARTED})


def outcome_stored(data: object) -> bool:
    """Whether a published result is an outcome, not a task's STARTED state: only an outcome
    frees a slot and has something for reconcile (anything unreadable counts as one)."""
    try:
        status = json.loads(data).get("status") if isinstance(data, bytes | str) else None
    except (ValueError, AttributeError):
        return True
    return status not in _NOT_OUTCOMES


class ResultWakeup:
    """An event set whenever a task whose id matches the pattern stores an outcome."""

    def __init__(self, client: redis.Redis, pattern: str) -> None:
        self.client = client
        self.pattern = pattern
        self.event = threading.Event()
        self._pubsub: PubSub | None = None
        self._thread: PubSubWorkerThread | None = None

    @classmethod
    def for_app(cls, app: Celery, settings: Settings) -> ResultWakeup:
        """Results of yggcelery's tasks in ``app``'s backend (the Redis of ``settings``)."""
        backend: Any = app.backend  # a key-value backend: its key naming
        key = backend.get_key_for_task(TASK_ID_PREFIX)
        prefix = key.decode() if isinstance(key, bytes) else str(key)
        return cls(redis_for(settings), prefix + "*")

    def __repr__(self) -> str:
        return f"<ResultWakeup {self.pattern!r} {'on' if self.running else 'off'}>"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Subscribe (idempotent); False when Redis cannot be reached now (try again later)."""
        if self.running:
            return True
        try:
            pubsub = self.client.pubsub(  # type: ignore[no-untyped-call, unused-ignore]
                ignore_subscribe_messages=True
            )
            pubsub.psubscribe(**{self.pattern: self._on_message})
            self._thread = pubsub.run_in_thread(
                sleep_time=0.5, daemon=True, exception_handler=self._on_error
            )
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.info("result wake-up unavailable for now (polling instead): %r", exc)
            return False
        self._pubsub = pubsub
        return True

    def nap(
        self,
        stop: threading.Event,
        seconds: float,
        *,
        watch_s: float = 0.0,
        wake: Callable[[], bool] = lambda: False,
    ) -> None:
        """Return after ``seconds``, or as soon as a result is stored, ``stop`` is set or
        ``wake()`` (asked every ``watch_s``) says so."""
        if not self.running:
            self.start()

        def wait(step: float) -> bool:
            # Short waits: `stop` is set by signal handlers and has no way to set our event.
            return stop.is_set() or self.event.wait(min(step, 0.1))

        nap(seconds, watch_s=watch_s, wake=wake, wait=wait)
        # Cleared before the poll that follows: a result stored during that poll sets it again.
        self.event.clear()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None

    def _on_message(self, message: dict[str, Any]) -> None:
        if outcome_stored(message.get("data")):
            self.event.set()

    def _on_error(self, exc: BaseException, pubsub: PubSub, thread: PubSubWorkerThread) -> None:
        """Redis went away: keep the thread (redis-py reconnects and subscribes again on the
        next read), pausing so a long outage does not spin."""
        log.debug("result wake-up: %r; retrying", exc)
        time.sleep(0.5)
