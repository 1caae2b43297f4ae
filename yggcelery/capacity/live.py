"""Live capacity: each worker re-probes its own host's server and says how many slots to fill.

A server restarted with another ``--parallel``, or an Ollama fallen back to one request at a
time, makes the configured ``slots`` wrong while the cluster runs. :class:`CapacityStep` is a
worker bootstep (like :class:`~yggcelery.heartbeat.HeartbeatStep`): a thread in the worker's
*main* process probes the host's server every ``capacity.probe_s`` (status endpoints only, no
measuring requests) and writes what it found to ``ygg:capacity:<host>``::

    {"host": "fenrir-chat", "configured": 3, "effective": 1, "parallel": 1,
     "parallel_source": "/slots lists 1", "running": 1, "waiting": 2, "in_flight": 3,
     "gpu": 0.97, "gpu_source": "NVML", "kind": "llamacpp", "error": null, "at": 1718000000.0}

with a TTL of :data:`TTL_PERIODS` probe periods: a worker that stops probing stops counting.
``effective`` is :func:`~yggcelery.capacity.effective.effective_slots` of the reading, with the
worker's running tasks as ``in_flight``; it drops when the server runs fewer at once than the
slots, or keeps requests waiting while our slots are full, and comes back with the first
reading that shows the server recovered. The first probe runs as the worker starts, so a
server restarted with another parallelism is re-learned within one period (plus the probe).

Readers: :func:`read_capacity` (one ``MGET``), :func:`effective_slots_by_host` (pure: the
configured slots where no fresh reading is), :func:`capacity_rows` for ``ygg status``. The GPU
figure comes from the probe's best source: NVML when the server is on the worker's machine,
vLLM's KV cache use, llama.cpp's busy slots, the simulator, Ollama's ``/api/ps``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import redis
from celery import bootsteps
from celery.worker import state

from yggcelery.capacity.effective import effective_slots
from yggcelery.capacity.probe import probe
from yggcelery.capacity.reading import ServerReading
from yggcelery.sentinel import from_url
from yggcelery.settings import Settings

log = logging.getLogger(__name__)

KEY = "ygg:capacity:{host}"
#: A reading lives this many probe periods: one missed probe is forgiven, two are not.
TTL_PERIODS = 3
#: Longest wait for Redis when writing a reading: a reading that cannot be written is skipped.
REDIS_TIMEOUT_S = 2.0


@dataclass(frozen=True, kw_only=True)
class LiveCapacity:
    """One host's capacity as its worker last read it from the host's model server."""

    host: str
    #: The host's ``slots`` in the worker's settings, and the slots to fill now.
    configured: int
    effective: int
    #: Requests the server runs at once (reported or measured), and what says so.
    parallel: int | None
    parallel_source: str | None
    #: Requests the server runs now and keeps waiting inside it (llama.cpp's "deferred").
    running: int | None
    waiting: int | None
    #: Tasks the worker was running when it probed (our slots in use).
    in_flight: int
    #: GPU busy share 0..1 and its source (NVML, vLLM KV cache, llama.cpp busy slots, ...).
    gpu: float | None
    gpu_source: str | None
    kind: str | None
    #: Why the server could not be read (then ``effective`` is ``configured``).
    error: str | None
    #: Unix time of the probe.
    at: float

    @classmethod
    def of(
        cls, reading: ServerReading, *, configured: int, in_flight: int, at: float
    ) -> LiveCapacity:
        """The live capacity that ``reading`` means for a host of ``configured`` slots (pure)."""
        found, gpu = reading.parallel, reading.gpu
        return cls(
            host=reading.host,
            configured=configured,
            effective=effective_slots(configured, reading, in_flight=in_flight),
            parallel=found.slots if found else None,
            parallel_source=f"{found.how}: {found.source}" if found else None,
            running=reading.running,
            waiting=reading.waiting,
            in_flight=in_flight,
            gpu=gpu.fraction if gpu else None,
            gpu_source=gpu.source if gpu else None,
            kind=reading.kind,
            error=reading.error,
            at=at,
        )

    @property
    def full(self) -> bool:
        """Every configured slot was running a task at the probe."""
        return self.in_flight >= self.configured

    def age_s(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.at

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> LiveCapacity:
        """Parse a stored reading; raises ``ValueError`` for one that is not a reading."""
        try:
            data = json.loads(raw)
            return cls(**data)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a capacity reading: {exc}") from None

    def __repr__(self) -> str:
        state_ = f"error={self.error!r}" if self.error else f"waiting={self.waiting}"
        return (
            f"<LiveCapacity {self.host} {self.effective}/{self.configured} slots"
            f" parallel={self.parallel} {state_}>"
        )


# -- readers ----------------------------------------------------------------------------------


def read_capacity(client: redis.Redis, hosts: Collection[str]) -> dict[str, LiveCapacity | None]:
    """The latest reading of each host (None: none fresh, or unreadable). One round trip."""
    names = list(hosts)
    if not names:
        return {}
    raw = client.mget([KEY.format(host=h) for h in names])
    return {name: _parse(name, value) for name, value in zip(names, raw, strict=True)}


def effective_slots_by_host(
    settings: Settings, live: Mapping[str, LiveCapacity | None]
) -> dict[str, int]:
    """Slots to fill per configured host: the live figure, never above the configured slots,
    or the configured slots where there is no fresh reading (pure)."""
    out = {}
    for name, host in settings.hosts.items():
        found = live.get(name)
        out[name] = host.slots if found is None else max(1, min(found.effective, host.slots))
    return out


def capacity_rows(
    settings: Settings, client: redis.Redis, *, now: float | None = None
) -> list[dict[str, Any]]:
    """Per host, for ``ygg status``: configured vs effective slots, the server's parallelism
    and queue, GPU use and where it comes from, the reading's age (None: no fresh reading)."""
    live = read_capacity(client, list(settings.hosts))
    slots = effective_slots_by_host(settings, live)
    at = time.time() if now is None else now
    return [_row(name, settings.hosts[name].slots, slots[name], live[name], at) for name in slots]


def _row(
    name: str, configured: int, effective: int, found: LiveCapacity | None, now: float
) -> dict[str, Any]:
    row: dict[str, Any] = {"host": name, "configured": configured, "effective": effective}
    keys = ("parallel", "parallel_source", "running", "waiting", "gpu", "gpu_source", "error")
    row.update({key: getattr(found, key) if found else None for key in keys})
    row["age_s"] = round(found.age_s(now), 1) if found else None
    return row


def _parse(host: str, raw: bytes | str | None) -> LiveCapacity | None:
    if raw is None:
        return None
    try:
        return LiveCapacity.from_json(raw)
    except ValueError as exc:
        log.warning("%s of host %s: %s; ignored", KEY.format(host=host), host, exc)
        return None


# -- the worker side --------------------------------------------------------------------------


def host_of_worker(hostname: str, queues: Collection[str], settings: Settings) -> str | None:
    """The host a worker serves: its node name's prefix (``ygg worker`` names it
    ``<host>@<machine>``), else the one host queue it consumes; None for the control and
    cloud workers, and for a worker consuming several host queues (pure)."""
    prefix = hostname.partition("@")[0]
    if prefix in settings.hosts:
        return prefix
    served = [queue for queue in queues if queue in settings.hosts]
    return served[0] if len(served) == 1 else None


def running_tasks() -> int:
    """Tasks this worker runs now (Celery's own bookkeeping, in the main process)."""
    return len(state.active_requests)


class LiveCheck:
    """Probes one host's server and writes its :class:`LiveCapacity`; :meth:`run` is the
    probing thread's body."""

    def __init__(
        self,
        settings: Settings,
        host: str,
        *,
        in_flight: Callable[[], int] = running_tasks,
        client: redis.Redis | None = None,
    ) -> None:
        """``in_flight`` counts the tasks running on the host now (the worker's own count)."""
        self.settings = settings
        self.host = host
        self.key = KEY.format(host=host)
        self.in_flight = in_flight
        self.client = client or _redis(settings)
        self.http = httpx.Client()
        self.stopped = threading.Event()
        self._effective: int | None = None

    def __repr__(self) -> str:
        return f"<LiveCheck {self.key} every {self.settings.capacity.probe_s:g}s>"

    @property
    def ttl_s(self) -> float:
        return TTL_PERIODS * self.settings.capacity.probe_s

    def check(self) -> LiveCapacity:
        """Probe the server once, write the reading, and return it."""
        host = self.settings.hosts[self.host]
        reading = probe(self.host, host, self.http, capacity=self.settings.capacity)
        live = LiveCapacity.of(
            reading, configured=host.slots, in_flight=self.in_flight(), at=time.time()
        )
        self._write(live)
        self._log_change(live)
        return live

    def run(self) -> None:
        """Probe at once, then every ``probe_s`` (measured from each probe's start)."""
        period_s = self.settings.capacity.probe_s
        try:
            while not self.stopped.is_set():
                started = time.monotonic()
                try:
                    self.check()
                except Exception:  # a bug in a probe must not end a running worker's checks
                    log.exception("capacity check of host %s failed", self.host)
                self.stopped.wait(max(0.0, period_s - (time.monotonic() - started)))
        finally:
            self.close()

    def stop(self) -> None:
        """Stop probing (the thread ends after the probe under way); the last reading stays
        until its TTL, since it describes the server, not the worker."""
        self.stopped.set()

    def close(self) -> None:
        """Close the HTTP client (:meth:`run` does at its end; callers of :meth:`check` do)."""
        self.http.close()

    def _write(self, live: LiveCapacity) -> None:
        try:
            self.client.set(self.key, live.to_json(), px=int(self.ttl_s * 1000))
        except redis.RedisError as exc:  # Redis away: the next probe writes again
            log.debug("capacity of host %s not written: %r", self.host, exc)

    def _log_change(self, live: LiveCapacity) -> None:
        if live.effective == self._effective:
            return
        if live.effective < live.configured:
            log.warning("host %s: %d of %d slots effective: %r", self.host, live.effective,
                        live.configured, live)  # fmt: skip
        elif self._effective is not None:
            log.info("host %s: all %d slots effective again", self.host, live.configured)
        self._effective = live.effective


def _redis(settings: Settings) -> redis.Redis:
    return from_url(
        settings.result_backend,
        master=settings.sentinel_master,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
    )


class CapacityStep(bootsteps.StartStopStep):
    """The worker bootstep that runs :class:`LiveCheck` for the worker's host in a thread of
    the main process (nothing for the control and cloud workers)."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.check: LiveCheck | None = None
        self.thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        settings = getattr(worker.app, "ygg", None)
        if not isinstance(settings, Settings):
            return
        queues = list(worker.app.amqp.queues.consume_from or ())
        host = host_of_worker(worker.hostname, queues, settings)
        if host is None:
            log.debug("worker %s serves no single host: no capacity checks", worker.hostname)
            return
        self.check = LiveCheck(settings, host)
        self.thread = threading.Thread(target=self.check.run, name="ygg-capacity", daemon=True)
        self.thread.start()

    def stop(self, worker: Any) -> None:
        if self.check is not None:
            self.check.stop()
