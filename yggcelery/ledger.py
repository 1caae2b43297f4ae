"""The dispatch ledger: which bead went where, at which attempt, in the result backend's Redis.

Beads says *that* an issue is ``in_progress`` for ``ygg``; the ledger says which Celery task
carries it, on which host, since when and at which attempt. The dispatcher writes it, the
reconcile pass reads it to find results, failures and lost work, and both stay correct after a
restart because nothing lives only in a process's memory.

One hash ``ygg:ledger`` maps bead id → JSON :class:`Entry`. Claims take a ``SET NX`` key per
(bead, attempt), so two dispatchers started by mistake still dispatch each attempt once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from functools import cache
from typing import NamedTuple

import redis

from yggcelery.settings import Settings

LEDGER_KEY = "ygg:ledger"
CLAIM_KEY = "ygg:claim:{bead}:{attempt}"
DELIVERIES_KEY = "ygg:deliveries:{task_id}:{retries}"
#: How long a (bead, attempt) claim key is kept: far longer than any attempt lives.
CLAIM_TTL_S = 7 * 24 * 3600

# KEYS: claim key, ledger hash; ARGV: ttl, bead, entry JSON. 1 if this caller took the claim.
_CLAIM_SCRIPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  return 1
end
return 0
"""


class EntryState(StrEnum):
    """Where one bead's current attempt stands. Transitions live in ``reconcile.decide``."""

    #: Claimed in Beads, message not yet sent (a dispatcher stopped here is handed back).
    CLAIMED = "claimed"
    #: Message sent to the host's queue; queued, running, or finished but not yet reconciled.
    SENT = "sent"
    #: Handed back to ``open`` after a transient failure or loss; keeps the attempt count.
    REQUEUED = "requeued"


@dataclass(frozen=True)
class Entry:
    """One bead's latest dispatch attempt."""

    bead: str
    attempt: int
    task_id: str
    host: str
    kind: str
    priority: int
    state: EntryState
    #: time.time() of the last state change.
    since: float
    #: Failed or lost attempts so far (a hand-back at shutdown is not one); capped by max_attempts.
    failures: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Entry:
        data = json.loads(raw)
        data["state"] = EntryState(data["state"])
        return cls(**data)

    def moved(self, state: EntryState, *, now: float | None = None) -> Entry:
        return replace(self, state=state, since=time.time() if now is None else now)


@cache
def redis_client(url: str) -> redis.Redis:
    """One Redis client (and connection pool) per process and URL."""
    return redis.Redis.from_url(url, health_check_interval=10, socket_timeout=10)


def redis_for(settings: Settings) -> redis.Redis:
    """The Redis client of the result backend (one per process and URL)."""
    return redis_client(settings.result_backend)


class Delivery(NamedTuple):
    """What :meth:`Ledger.delivered` tells a worker about the task it just received."""

    #: The task is the bead's live attempt (not revoked, handed back or replaced).
    current: bool
    #: Deliveries of this (task, retry) so far, this one included.
    deliveries: int


def _is_current(entry: Entry | None, task_id: str) -> bool:
    return entry is not None and entry.task_id == task_id and entry.state is EntryState.SENT


class Ledger:
    """Read and write dispatch entries; every method is one Redis round trip or a few."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._claim = client.register_script(_CLAIM_SCRIPT)

    @classmethod
    def from_settings(cls, settings: Settings) -> Ledger:
        return cls(redis_for(settings))

    def __repr__(self) -> str:
        return f"<Ledger entries={self.client.hlen(LEDGER_KEY)}>"

    def entries(self) -> list[Entry]:
        raw: dict[bytes, bytes] = self.client.hgetall(LEDGER_KEY)  # type: ignore[assignment]
        return [Entry.from_json(value) for value in raw.values()]

    def get(self, bead: str) -> Entry | None:
        raw = self.client.hget(LEDGER_KEY, bead)
        return Entry.from_json(raw) if raw else None

    def put(self, *entries: Entry) -> None:
        """Write ``entries`` (one round trip however many)."""
        if entries:
            self.client.hset(LEDGER_KEY, mapping={e.bead: e.to_json() for e in entries})

    def forget(self, bead: str) -> None:
        self.client.hdel(LEDGER_KEY, bead)

    def update(self, *, put: list[Entry], forget: list[str]) -> None:
        """Write ``put`` and drop ``forget`` in one round trip."""
        with self.client.pipeline(transaction=True) as pipe:
            if put:
                pipe.hset(LEDGER_KEY, mapping={e.bead: e.to_json() for e in put})
            if forget:
                pipe.hdel(LEDGER_KEY, *forget)
            pipe.execute()

    def is_current(self, bead: str, task_id: str) -> bool:
        """Whether ``task_id`` is the bead's live attempt (not revoked, handed back or replaced)."""
        return _is_current(self.get(bead), task_id)

    def next_attempt(self, bead: str) -> int:
        entry = self.get(bead)
        return 1 if entry is None else entry.attempt + 1

    def claim(self, entry: Entry, *, ttl_s: int = CLAIM_TTL_S) -> bool:
        """Take ``entry``'s (bead, attempt) and record it; True for exactly one caller per pair,
        across processes and machines. One round trip: the key and the entry, atomically."""
        key = CLAIM_KEY.format(bead=entry.bead, attempt=entry.attempt)
        taken = self._claim(keys=[key, LEDGER_KEY], args=[ttl_s, entry.bead, entry.to_json()])
        return bool(taken)

    def delivered(
        self, bead: str, task_id: str, retries: int, *, ttl_s: int = CLAIM_TTL_S
    ) -> Delivery:
        """A worker got ``task_id``: count this delivery of (task, retry), and say whether the
        task is still the bead's live attempt. One round trip."""
        key = DELIVERIES_KEY.format(task_id=task_id, retries=retries)
        with self.client.pipeline() as pipe:
            pipe.hget(LEDGER_KEY, bead)
            pipe.incr(key)
            pipe.expire(key, ttl_s)
            raw, count, _ = pipe.execute()
        entry = Entry.from_json(raw) if raw else None
        return Delivery(current=_is_current(entry, task_id), deliveries=int(count))

    @contextmanager
    def lock(self, name: str, *, timeout_s: float = 120.0, wait_s: float = 0.0) -> Iterator[bool]:
        """A Redis lock; yields False (and does not block longer than ``wait_s``) if held."""
        lock = self.client.lock(f"ygg:lock:{name}", timeout=timeout_s, blocking_timeout=wait_s)
        acquired = lock.acquire(blocking=wait_s > 0)
        try:
            yield acquired
        finally:
            if acquired:
                # A release that cannot reach Redis (it restarted mid-pass) leaves the lock to
                # expire after timeout_s: keep that short, or work waits for it.
                with suppress(
                    redis.exceptions.LockError, redis.ConnectionError, redis.TimeoutError
                ):
                    lock.release()
