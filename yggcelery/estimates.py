"""Expected service seconds per (host, kind): seeded from settings, moved by measured durations.

Each estimate starts at ``scheduling.expected_s[kind]`` divided by the host's speed for that
kind, a guess that the first measured duration replaces. Until ``1 / estimate_weight``
durations are in (five by default) the estimate is their mean; after that each one moves it by
``scheduling.estimate_weight`` of the difference (an exponentially weighted moving average), so
it follows a model that got slower or faster within a few tasks and one odd task moves it only
part of the way. (A seed kept as the average's starting point would take a dozen tasks to wash
out: text seeded at 6 s that takes 10 s was still thought 8 s long after three, and routing
decided on that.)

- :class:`EstimateTable` — a frozen snapshot: what the pure scheduler reads
  (:class:`yggcelery.scheduling.ServiceTimes`) and ``ygg status`` shows;
- :class:`RedisEstimates` — the shared store: one hash ``ygg:estimates`` in the result
  backend's Redis, field ``["<host>", "<kind>"]`` (JSON), value the estimate in seconds, and
  beside it ``ygg:estimates:samples``, how many durations moved it. An observation is one Lua
  script, so dispatchers and reconcile passes never lose each other's;
- :class:`MemoryEstimates` — the same in one process (the asyncio dispatcher, tests).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import redis

from yggcelery.connections import redis_for
from yggcelery.settings import Settings

ESTIMATES_KEY = "ygg:estimates"
#: Durations observed per field of :data:`ESTIMATES_KEY`.
SAMPLES_KEY = "ygg:estimates:samples"
#: The sample count of an estimate written before counts were kept: settled, plain EWMA.
SETTLED = 1_000_000

# KEYS: the estimates hash, the samples hash. ARGV: field; measured seconds; weight; seed (the
# estimate while the field is absent); the count of an estimate kept without one (SETTLED).
# An absent estimate (never measured, or deleted by hand) restarts its count at 1.
# Returns the new estimate as a string (a Lua number would come back as an integer).
_OBSERVE_SCRIPT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local n = 1
if old then
  n = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  if n == 1 then
    n = tonumber(ARGV[5])
  end
else
  redis.call('HSET', KEYS[2], ARGV[1], 1)
end
local weight = math.max(tonumber(ARGV[3]), 1 / n)
old = tonumber(old or ARGV[4])
local new = old + weight * (tonumber(ARGV[2]) - old)
local text = string.format('%.17g', new)
redis.call('HSET', KEYS[1], ARGV[1], text)
return text
"""


def seed_s(settings: Settings, host: str, kind: str) -> float:
    """The estimate before any measurement: the kind's expected seconds over the host's speed."""
    config = settings.hosts.get(host)
    speed = config.speed_for(kind) if config is not None else None
    return settings.scheduling.default_s(kind) / (speed or 1.0)


def ewma(previous: float, sample_s: float, *, weight: float) -> float:
    """``previous`` moved ``weight`` (0..1] of the way to ``sample_s``."""
    return previous + weight * (sample_s - previous)


def weight_for(samples: int, *, weight: float) -> float:
    """The weight of the ``samples``-th duration (counting from 1): 1 for the first (it
    replaces the seed), ``1 / samples`` while that is more than ``weight`` (the running mean),
    then ``weight``."""
    return max(weight, 1.0 / max(samples, 1))


def usable(duration_s: float) -> bool:
    """Whether a measured duration may move an estimate (finite, not negative)."""
    return math.isfinite(duration_s) and duration_s >= 0


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """One row of ``ygg status``: the expected seconds of a kind on a host."""

    host: str
    kind: str
    expected_s: float
    #: False while the figure is still the configured seed.
    measured: bool


@dataclass(frozen=True, kw_only=True)
class EstimateTable:
    """Expected seconds per (host, kind) at one moment: measured where known, else the seed."""

    settings: Settings
    measured: Mapping[tuple[str, str], float]

    def __repr__(self) -> str:
        return f"<EstimateTable measured={len(self.measured)}>"

    def expected_s(self, host: str, kind: str) -> float:
        """Expected seconds of one ``kind`` task on ``host``."""
        value = self.measured.get((host, kind))
        return value if value is not None else seed_s(self.settings, host, kind)

    def rows(self) -> list[Estimate]:
        """Every (host, kind) the fleet can run, own kinds first, in configuration order."""
        return [
            Estimate(
                host=name,
                kind=kind,
                expected_s=self.expected_s(name, kind),
                measured=(name, kind) in self.measured,
            )
            for name, host in self.settings.hosts.items()
            for kind in (*host.kinds, *host.overflow)
        ]


class Estimates(Protocol):
    """Where estimates live; the dispatcher reads a table per poll and reports durations."""

    def observe(self, host: str, kind: str, duration_s: float) -> float:
        """Move the (host, kind) estimate towards ``duration_s``; the new estimate."""
        ...

    def table(self) -> EstimateTable:
        """A snapshot of every estimate."""
        ...


class MemoryEstimates:
    """Estimates in this process only."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._measured: dict[tuple[str, str], float] = {}
        self._samples: dict[tuple[str, str], int] = {}

    def __repr__(self) -> str:
        return f"<MemoryEstimates measured={len(self._measured)}>"

    def observe(self, host: str, kind: str, duration_s: float) -> float:
        current = self.table().expected_s(host, kind)
        if not usable(duration_s):
            return current
        key = (host, kind)
        self._samples[key] = samples = self._samples.get(key, 0) + 1
        weight = weight_for(samples, weight=self.settings.scheduling.estimate_weight)
        self._measured[key] = new = ewma(current, duration_s, weight=weight)
        return new

    def table(self) -> EstimateTable:
        return EstimateTable(settings=self.settings, measured=dict(self._measured))


class RedisEstimates:
    """Estimates in the result backend's Redis, shared by every dispatcher (one hash)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._observe = client.register_script(_OBSERVE_SCRIPT)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisEstimates:
        return cls(redis_for(settings), settings)

    def __repr__(self) -> str:
        return f"<RedisEstimates key={ESTIMATES_KEY}>"

    def observe(self, host: str, kind: str, duration_s: float) -> float:
        """One round trip; a duration that is not finite or below 0 changes nothing."""
        if not usable(duration_s):
            return self.table().expected_s(host, kind)
        weight = self.settings.scheduling.estimate_weight
        seed = seed_s(self.settings, host, kind)
        args = [_field(host, kind), repr(float(duration_s)), repr(weight), repr(seed), str(SETTLED)]
        return float(self._observe(keys=[ESTIMATES_KEY, SAMPLES_KEY], args=args))

    def table(self) -> EstimateTable:
        """One ``HGETALL``; fields that do not parse are left out (the seed stands)."""
        raw: dict[bytes, bytes] = self.client.hgetall(ESTIMATES_KEY)  # type: ignore[assignment]
        rows = (_parse(field, value) for field, value in raw.items())
        measured = {key: seconds for key, seconds in filter(None, rows)}
        return EstimateTable(settings=self.settings, measured=measured)


def _field(host: str, kind: str) -> str:
    return json.dumps([host, kind])


def _parse(field: bytes, value: bytes) -> tuple[tuple[str, str], float] | None:
    """``((host, kind), seconds)`` of one hash entry, or None if it is not one of ours."""
    try:
        host, kind = json.loads(field)
        seconds = float(value)
    except (ValueError, TypeError):
        return None
    if not (isinstance(host, str) and isinstance(kind, str) and usable(seconds)):
        return None
    return (host, kind), seconds
