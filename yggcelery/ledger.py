"""The dispatch ledger: which bead went where, at which attempt, in the result backend's Redis.

Beads says *that* an issue is ``in_progress`` for ``ygg``; the ledger says which Celery task
carries it, on which host, since when and at which attempt. The dispatcher writes it, the
reconcile pass reads it to find results, failures and lost work, and both stay correct after a
restart because nothing lives only in a process's memory.

One hash ``ygg:ledger`` maps bead id → JSON :class:`Entry`; an entry is forgotten once its
outcome is in Beads. A second hash, ``ygg:attempts``, remembers each bead's last attempt number
for good (a few bytes per bead ever dispatched), so a bead a person reopens is sent as a new
attempt with a new task id, never answered from an old result. A claim is one compare-and-set
on both (:meth:`Ledger.claim`), so two dispatchers started by mistake still send each bead once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import NamedTuple

import redis

from yggcelery.connections import redis_for
from yggcelery.routing import task_id, task_id_prefix
from yggcelery.settings import Settings

LEDGER_KEY = "ygg:ledger"
ATTEMPTS_KEY = "ygg:attempts"
DELIVERIES_KEY = "ygg:deliveries:{task_id}:{retries}"
#: How long a delivery count is kept: far longer than any attempt lives.
DELIVERIES_TTL_S = 7 * 24 * 3600
#: Which worker and pool process run a task now (``<hostname>\t<pid>\t<started at>``).
RUNNING_KEY = "ygg:running:{task_id}"

# KEYS: ledger hash, attempts hash. ARGV: bead; the attempt of the entry the caller saw ('0':
# none); the new entry's JSON; its task id without the attempt number. The ledger must still
# hold what the caller saw: otherwise another dispatcher moved first, and 0 is returned. The new
# attempt is one past the bead's last (its entry's, or the one remembered after it was
# forgotten); the entry is stored with it, and it is returned.
_CLAIM_SCRIPT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local seen = 0
if raw then seen = cjson.decode(raw)['attempt'] end
if seen ~= tonumber(ARGV[2]) then return 0 end
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local attempt = math.max(seen, last) + 1
local entry = cjson.decode(ARGV[3])
entry['attempt'] = attempt
entry['task_id'] = ARGV[4] .. attempt
redis.call('HSET', KEYS[2], ARGV[1], attempt)
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(entry))
return attempt
"""


# Reconcile's writes, each only if the bead's entry is still at the attempt the pass read: a
# dispatcher may have claimed the next attempt since (a new entry under the same bead). ARGV: the
# number of writes, then per write the bead, the attempt read, and the new entry's JSON ("" to
# drop the entry). Returns how many writes were left alone.
_UPDATE_SCRIPT = """
local skipped = 0
for i = 2, 1 + 3 * tonumber(ARGV[1]), 3 do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  if raw and cjson.decode(raw)['attempt'] == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == '' then
      redis.call('HDEL', KEYS[1], ARGV[i])
    else
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    end
  else
    skipped = skipped + 1
  end
end
return skipped
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


class Delivery(NamedTuple):
    """What :meth:`Ledger.delivered` tells a worker about the task it just received."""

    #: The task is the bead's live attempt (not revoked, handed back or replaced).
    current: bool
    #: Deliveries of this (task, retry) so far, this one included.
    deliveries: int


def _is_current(entry: Entry | None, task: str) -> bool:
    return entry is not None and entry.task_id == task and entry.state is EntryState.SENT


class Ledger:
    """Read and write dispatch entries; every method is one Redis round trip or a few."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._claim = client.register_script(_CLAIM_SCRIPT)
        self._update = client.register_script(_UPDATE_SCRIPT)

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

    def update(self, *, put: list[Entry], forget: list[Entry]) -> int:
        """Write ``put`` and drop ``forget`` in one round trip, each only where the bead's entry
        is still at the same attempt (a dispatcher that claimed the next attempt meanwhile
        keeps it). Returns how many were left alone."""
        writes = [(e.bead, e.attempt, e.to_json()) for e in put]
        writes += [(e.bead, e.attempt, "") for e in forget]
        if not writes:
            return 0
        args: list[str | int] = [len(writes)]
        for write in writes:
            args.extend(write)
        return int(self._update(keys=[LEDGER_KEY], args=args))

    def claim(self, entry: Entry, *, seen: Entry | None) -> Entry | None:
        """Record ``entry`` (its attempt number and task id filled in here) as the bead's next
        attempt, if the ledger still holds the entry the caller has ``seen`` (None: none).

        Returns the recorded entry, or None when another dispatcher claimed the bead since the
        caller looked. The attempt is one past the bead's last, even one whose entry was
        forgotten when its outcome reached Beads. One round trip.
        """
        attempt = self._claim(
            keys=[LEDGER_KEY, ATTEMPTS_KEY],
            args=[entry.bead, seen.attempt if seen else 0, entry.to_json(),
                  task_id_prefix(entry.bead)],
        )  # fmt: skip
        if not attempt:
            return None
        return replace(entry, attempt=int(attempt), task_id=task_id(entry.bead, int(attempt)))

    def running_on(self, task: str) -> tuple[str, int, float] | None:
        """(worker hostname, pool process id, start time) of ``task`` while a worker runs it."""
        return self.running_of([task]).get(task)

    def running_of(self, tasks: list[str]) -> dict[str, tuple[str, int, float]]:
        """:meth:`running_on` for several tasks at once (one round trip); absent ones left out."""
        if not tasks:
            return {}
        raw = self.client.mget([RUNNING_KEY.format(task_id=t) for t in tasks])
        found = {}
        for task, value in zip(tasks, raw, strict=True):
            if value:
                text = value.decode() if isinstance(value, bytes) else str(value)
                hostname, pid, since = text.split("\t")
                found[task] = (hostname, int(pid), float(since))
        return found

    def started(self, task: str, hostname: str, pid: int, *, ttl_s: float) -> None:
        """Record that pool process ``pid`` of ``hostname`` runs ``task`` (``ttl_s`` at most)."""
        self.client.set(RUNNING_KEY.format(task_id=task), f"{hostname}\t{pid}\t{time.time()}",
                        px=int(ttl_s * 1000))  # fmt: skip

    def finished(self, task: str) -> None:
        """``task`` no longer runs (its outcome is stored, or it gave up)."""
        self.client.delete(RUNNING_KEY.format(task_id=task))

    def delivered(
        self, bead: str, task: str, retries: int, *, ttl_s: int = DELIVERIES_TTL_S
    ) -> Delivery:
        """A worker got ``task``: count this delivery of (task, retry), and say whether the task
        is still the bead's live attempt. One round trip."""
        key = DELIVERIES_KEY.format(task_id=task, retries=retries)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(LEDGER_KEY, bead)
            pipe.incr(key)
            pipe.expire(key, ttl_s)
            raw, count, _ = pipe.execute()
        entry = Entry.from_json(raw) if raw else None
        return Delivery(current=_is_current(entry, task), deliveries=int(count))

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
