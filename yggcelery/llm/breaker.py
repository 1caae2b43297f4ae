"""A circuit breaker per model host, so a dead host is not hammered by every worker.

::

    CLOSED ──K consecutive failures──▶ OPEN ──cool-down──▶ HALF_OPEN (one probe allowed)
      ▲                                  ▲                    │
      └───────────── probe succeeds ─────┼────────────────────┤
                                         └── probe fails ─────┘

Any success closes the breaker and clears the count. The counts live behind
:class:`BreakerState`: :class:`MemoryBreakerState` for one process, :class:`RedisBreakerState`
for workers on several machines, which then share one breaker per host. Taking the single
probe slot is atomic in both (a lock; a Lua script). A probe whose worker dies never reports:
its slot is given again after another cool-down.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

from yggcelery.errors import CircuitOpen

log = logging.getLogger(__name__)


class CircuitState(enum.Enum):
    """Where a host's breaker stands."""

    #: Requests flow; consecutive failures are counted.
    CLOSED = "closed"
    #: K failures in a row: requests are refused until the cool-down ends.
    OPEN = "open"
    #: The cool-down is over: one probe request may go (or is on its way).
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class Snapshot:
    """A host's stored breaker data."""

    failures: int = 0
    #: When the breaker opened (clock seconds), or None while closed.
    opened_at: float | None = None
    #: When the current probe was handed out, or None.
    probe_at: float | None = None


class BreakerState(Protocol):
    """Storage of breaker data; every method is atomic per host."""

    def snapshot(self, host: str) -> Snapshot: ...

    def fail(self, host: str, *, threshold: int, now: float) -> Snapshot:
        """Count a failure; open at ``threshold``, re-open (at ``now``) after a failed probe."""
        ...

    def succeed(self, host: str) -> None:
        """Forget the host's failures: closed."""
        ...

    def take_probe(self, host: str, *, now: float, cooldown_s: float) -> bool:
        """Hand out the probe slot if open for ``cooldown_s`` and no live probe holds it."""
        ...


def _after_failure(old: Snapshot, threshold: int, now: float) -> Snapshot:
    failures = old.failures + 1
    if old.probe_at is not None or (old.opened_at is None and failures >= threshold):
        return Snapshot(failures, now, None)
    return Snapshot(failures, old.opened_at, old.probe_at)


def _probe_free(old: Snapshot, now: float, cooldown_s: float) -> bool:
    if old.opened_at is None or now - old.opened_at < cooldown_s:
        return False
    return old.probe_at is None or now - old.probe_at >= cooldown_s


class MemoryBreakerState:
    """Breaker data in this process, behind one lock."""

    def __init__(self) -> None:
        self._hosts: dict[str, Snapshot] = {}
        self._lock = threading.Lock()

    def snapshot(self, host: str) -> Snapshot:
        with self._lock:
            return self._hosts.get(host, Snapshot())

    def fail(self, host: str, *, threshold: int, now: float) -> Snapshot:
        with self._lock:
            new = _after_failure(self._hosts.get(host, Snapshot()), threshold, now)
            self._hosts[host] = new
            return new

    def succeed(self, host: str) -> None:
        with self._lock:
            self._hosts.pop(host, None)

    def take_probe(self, host: str, *, now: float, cooldown_s: float) -> bool:
        with self._lock:
            old = self._hosts.get(host, Snapshot())
            if not _probe_free(old, now, cooldown_s):
                return False
            self._hosts[host] = Snapshot(old.failures, old.opened_at, now)
            return True


# KEYS[1] = the host's hash; ARGV = threshold, now. Same rule as _after_failure.
_FAIL_LUA = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local opened = redis.call('HGET', KEYS[1], 'opened_at')
local probe = redis.call('HGET', KEYS[1], 'probe_at')
if probe or (not opened and failures >= tonumber(ARGV[1])) then
  redis.call('HSET', KEYS[1], 'opened_at', ARGV[2])
  redis.call('HDEL', KEYS[1], 'probe_at')
end
return redis.call('HMGET', KEYS[1], 'failures', 'opened_at', 'probe_at')
"""

# KEYS[1] = the host's hash; ARGV = now, cooldown_s. Same rule as _probe_free.
_PROBE_LUA = """
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at'))
local now, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2])
if not opened or now - opened < cooldown then return 0 end
local probe = tonumber(redis.call('HGET', KEYS[1], 'probe_at'))
if probe and now - probe < cooldown then return 0 end
redis.call('HSET', KEYS[1], 'probe_at', ARGV[1])
return 1
"""


class RedisBreakerState:
    """Breaker data in one Redis hash per host (``<prefix><host>``), shared by all workers.

    A Redis that does not answer reads as a clean breaker and drops the write: a model answer
    already paid for in GPU time must not be lost because the broker blinked (the breaker is
    advice; the retry policy and the dispatcher's routing still see a dead host).
    """

    def __init__(self, client: redis.Redis, *, prefix: str = "ygg:breaker:") -> None:
        self.client = client
        self.prefix = prefix
        self._fail = client.register_script(_FAIL_LUA)
        self._probe = client.register_script(_PROBE_LUA)

    def snapshot(self, host: str) -> Snapshot:
        try:
            values = self.client.hmget(self.prefix + host, ["failures", "opened_at", "probe_at"])
        except redis.RedisError as exc:
            log.debug("breaker of %s unreadable, taken as closed: %r", host, exc)
            return Snapshot(failures=0, opened_at=None, probe_at=None)
        return _snapshot(values)

    def fail(self, host: str, *, threshold: int, now: float) -> Snapshot:
        try:
            return _snapshot(self._fail(keys=[self.prefix + host], args=[threshold, repr(now)]))
        except redis.RedisError as exc:
            log.debug("failure of %s not recorded: %r", host, exc)
            return Snapshot(failures=0, opened_at=None, probe_at=None)

    def succeed(self, host: str) -> None:
        try:
            self.client.delete(self.prefix + host)
        except redis.RedisError as exc:
            log.debug("success of %s not recorded: %r", host, exc)

    def take_probe(self, host: str, *, now: float, cooldown_s: float) -> bool:
        try:
            return bool(self._probe(keys=[self.prefix + host], args=[repr(now), repr(cooldown_s)]))
        except redis.RedisError:
            return True

    def __repr__(self) -> str:
        return f"<RedisBreakerState prefix={self.prefix!r}>"


def _snapshot(values: list[bytes | str | None]) -> Snapshot:
    failures, opened_at, probe_at = values
    return Snapshot(
        failures=int(failures or 0),
        opened_at=None if opened_at is None else float(opened_at),
        probe_at=None if probe_at is None else float(probe_at),
    )


class CircuitBreaker:
    """Per-host breaker over a :class:`BreakerState`; ``clock`` is injectable for tests."""

    def __init__(
        self,
        state: BreakerState,
        *,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.time,
        trust_clean_s: float = 0.0,
    ) -> None:
        self.store = state
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        #: How long a host found with nothing stored is let through without reading again:
        #: one round trip less per request, and a breaker opened by another process is seen
        #: up to this much later (a worker uses a second; 0 reads every time).
        self.trust_clean_s = trust_clean_s
        #: When :meth:`allow` last found nothing stored for a host, with no failure since in
        #: this process.
        self._clean: dict[str, float] = {}

    def state(self, host: str) -> CircuitState:
        """CLOSED, OPEN, or HALF_OPEN once the cool-down is over."""
        snap = self.store.snapshot(host)
        if snap.opened_at is None:
            return CircuitState.CLOSED
        if self.clock() - snap.opened_at < self.cooldown_s:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def allow(self, host: str) -> bool:
        """Whether a request may go to ``host`` now; after the cool-down, True for one caller."""
        now = self.clock()
        if now - self._clean.get(host, -math.inf) < self.trust_clean_s:
            return True
        snap = self.store.snapshot(host)
        if snap == Snapshot():
            self._clean[host] = now
        else:
            self._clean.pop(host, None)
        if snap.opened_at is None:
            return True
        return self.store.take_probe(host, now=now, cooldown_s=self.cooldown_s)

    def check(self, host: str) -> None:
        """Like :meth:`allow`, but raise :class:`CircuitOpen` when the request may not go."""
        if not self.allow(host):
            snap = self.store.snapshot(host)
            raise CircuitOpen(
                host,
                f"circuit open after {snap.failures} consecutive failures"
                f" (probing every {self.cooldown_s:g}s)",
            )

    def record_success(self, host: str) -> None:
        """Reset the host's failure count and close its breaker.

        When :meth:`allow` found nothing stored just before this request, there is nothing to
        reset and no round trip is made (the common case: one write fewer per task). A failure
        another process recorded while this request ran is then kept, as it came after the
        request started.
        """
        if host in self._clean:
            return
        self.store.succeed(host)

    def record_failure(self, host: str) -> None:
        self._clean.pop(host, None)
        self.store.fail(host, threshold=self.failures, now=self.clock())

    def __repr__(self) -> str:
        return f"<CircuitBreaker failures={self.failures} cooldown_s={self.cooldown_s:g}>"
