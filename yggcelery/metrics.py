"""The dispatcher's Prometheus metrics (``ygg loop`` serves them on ``metrics_port``).

Every value is read when Prometheus scrapes (:class:`YggCollector`), so nothing goes stale:

========================================  =========================================================
``ygg_queue_depth{host,priority}``        messages waiting in the host's broker lists, p "0".."4"
``ygg_slots_busy{host}``, ``_free``       tasks running on the host's worker / slots left
``ygg_worker_online{host}``               a worker answers the broadcast for the host's queue (1/0)
``ygg_host_up{host}``                     the model server answers (:class:`HostHealth`, 1/0)
``ygg_beads_ready{priority}``             ready issues in Beads not yet dispatched
``ygg_gpu_utilization{host}``             GPU busy share 0..1 (see :class:`GpuProbe`)
``ygg_cloud_spend_usd_today``             cloud fallback spend of the UTC day
``ygg_task_duration_seconds{host,kind}``  histogram of finished tasks' run time
========================================  =========================================================

Task durations are written by the reconcile pass when it closes an issue (:func:`observe_result`),
into a Redis hash shared by every process that reconciles (beat's job on the control worker and
the dispatcher's own pass), so the histogram counts each closed task once, whoever closed it.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import socket
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx
import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from yggcelery.settings import HostSettings, Settings

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from celery import Celery

    from yggcelery.beads import BeadsStore
    from yggcelery.health import HostHealth
    from yggcelery.outcomes import BeadResult

log = logging.getLogger(__name__)

#: The duration histogram: ``host<TAB>kind<TAB>i`` counts samples in bucket ``i`` alone (index
#: ``len(DURATION_BUCKETS_S)`` is above the last bound), plus ``...count`` and ``...sum``. The
#: scrape makes the buckets cumulative, so a sample costs three increments, not one per bucket.
DURATION_KEY = "ygg:metrics:task_duration_buckets"
#: Upper bounds (seconds) of the duration histogram: model answers take seconds to minutes.
DURATION_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0)
_SEP = "\t"

GPU_HELP = (
    "GPU busy share 0..1. NVML when the dispatcher runs on the host itself; for a simulated host"
    " the simulator's busy slot-seconds since the last scrape; otherwise an ESTIMATE: busy slots"
    " / slots while the model is loaded (Ollama /api/ps), 0 when it is not"
)


# --- task durations (written by reconcile, read at scrape) ------------------------------------


def observe_results(client: redis.Redis, results: list[BeadResult]) -> None:
    """The reconcile pass's hook: add the results it has just written into Beads to the shared
    histogram, one increment per field touched, in one transaction."""
    counts: Counter[str] = Counter()
    sums: dict[str, float] = {}
    for result in results:
        host = "cloud" if result.via_cloud else result.host
        kind, seconds = result.kind, max(result.total_s, 0.0)
        prefix = f"{host}{_SEP}{kind}{_SEP}"
        counts[f"{prefix}{bisect.bisect_left(DURATION_BUCKETS_S, seconds)}"] += 1
        counts[f"{prefix}count"] += 1
        sums[f"{prefix}sum"] = sums.get(f"{prefix}sum", 0.0) + seconds
    if not counts:
        return
    with client.pipeline(transaction=True) as pipe:
        for field, n in counts.items():
            pipe.hincrby(DURATION_KEY, field, n)
        for field, total in sums.items():
            pipe.hincrbyfloat(DURATION_KEY, field, total)
        pipe.execute()


class _HashReader(Protocol):
    def hgetall(self, name: str) -> Any: ...


def duration_family(client: _HashReader) -> HistogramMetricFamily:
    """``ygg_task_duration_seconds`` from the shared hash (its buckets made cumulative here)."""
    family = HistogramMetricFamily(
        "ygg_task_duration_seconds",
        "Run time of finished tasks (model answer included), by host and task kind",
        labels=["host", "kind"],
    )
    raw: dict[bytes, bytes] = client.hgetall(DURATION_KEY)
    series: dict[tuple[str, str], dict[str, float]] = {}
    for field, value in raw.items():
        host, kind, part = field.decode().split(_SEP)
        series.setdefault((host, kind), {})[part] = float(value)
    for (host, kind), parts in sorted(series.items()):
        count = parts.get("count", 0.0)
        cumulative = itertools.accumulate(
            parts.get(str(i), 0.0) for i in range(len(DURATION_BUCKETS_S))
        )
        buckets = [(str(b), n) for b, n in zip(DURATION_BUCKETS_S, cumulative, strict=True)]
        family.add_metric(
            [host, kind], buckets=[*buckets, ("+Inf", count)], sum_value=parts.get("sum", 0.0)
        )
    return family


# --- GPU utilisation --------------------------------------------------------------------------


@dataclass
class _SimSample:
    busy_slot_s: float
    elapsed_s: float


class GpuProbe:
    """GPU busy share per host: the simulator, NVML on this very host, else Ollama's ``/api/ps``."""

    def __init__(self, *, timeout_s: float = 1.0) -> None:
        self._http = httpx.Client(timeout=timeout_s)
        self._last: dict[str, _SimSample] = {}

    def utilization(self, name: str, host: HostSettings, *, busy: int) -> float | None:
        """0..1, or None when the host does not answer (no series is better than a made-up 0)."""
        sim = self._get_json(host.base_url + "/sim/status")
        if isinstance(sim, dict) and "busy_slot_s" in sim:
            return _clamp(self._from_sim(name, sim))
        if is_local(host.base_url):
            nvml = nvml_utilization()
            if nvml is not None:
                return _clamp(nvml)
        if host.dialect == "ollama":
            ps = self._get_json(host.base_url + "/api/ps")
            if not isinstance(ps, dict):
                return None
            return _clamp(busy / host.slots) if ps.get("models") else 0.0
        return _clamp(busy / host.slots)

    def _from_sim(self, name: str, status: dict[str, Any]) -> float:
        now = _SimSample(float(status["busy_slot_s"]), float(status["elapsed_s"]))
        last, self._last[name] = self._last.get(name), now
        span_s = now.elapsed_s - last.elapsed_s if last else 0.0
        if last is None or span_s <= 0 or now.busy_slot_s < last.busy_slot_s:
            return float(status["busy_slots"]) / float(status["slots"])
        return (now.busy_slot_s - last.busy_slot_s) / (float(status["slots"]) * span_s)

    def _get_json(self, url: str) -> Any:
        try:
            response = self._http.get(url)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def close(self) -> None:
        self._http.close()


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def is_local(base_url: str) -> bool:
    """Whether ``base_url`` names this machine (loopback, or this machine's own name)."""
    name = urlsplit(base_url).hostname or ""
    if name in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return any(info[4][0] in ("127.0.0.1", "::1") for info in infos)


def nvml_utilization() -> float | None:
    """Mean GPU utilisation of this machine's NVIDIA GPUs (0..1), or None without NVML."""
    try:
        import pynvml  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            rates = [
                pynvml.nvmlDeviceGetUtilizationRates(pynvml.nvmlDeviceGetHandleByIndex(i)).gpu
                for i in range(count)
            ]
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None
    return sum(rates) / (100.0 * len(rates)) if rates else None


# --- the collector ----------------------------------------------------------------------------


class YggCollector:
    """Reads the cluster, Beads, the hosts and Redis when scraped; one scrape at a time."""

    def __init__(
        self,
        settings: Settings,
        *,
        app: Celery,
        store: BeadsStore,
        health: HostHealth,
        client: redis.Redis,
        gpu: GpuProbe | None = None,
    ) -> None:
        self.settings = settings
        self.app = app
        self.store = store
        self.health = health
        self.client = client
        self.gpu = gpu or GpuProbe()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<YggCollector hosts={','.join(self.settings.hosts)}>"

    def describe(self) -> Iterable[Metric]:
        """The metric names, without reading anything (so registering costs nothing)."""
        return [*self._gauges().values(), duration_family(_NoRedis())]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            yield from self._collect()

    def _gauges(self) -> dict[str, GaugeMetricFamily]:
        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        return {
            "depth": gauge(
                "ygg_queue_depth", "Tasks waiting in the host's broker queue, by Beads priority",
                ["host", "priority"],
            ),
            "busy": gauge("ygg_slots_busy", "Slots running a task now", ["host"]),
            "free": gauge("ygg_slots_free", "Slots idle now", ["host"]),
            "online": gauge("ygg_worker_online", "A worker consumes the host's queue", ["host"]),
            "up": gauge("ygg_host_up", "The host's model server answers", ["host"]),
            "ready": gauge("ygg_beads_ready", "Ready issues in Beads, by priority", ["priority"]),
            "gpu": gauge("ygg_gpu_utilization", GPU_HELP, ["host"]),
            "spend": gauge("ygg_cloud_spend_usd_today", "Cloud fallback spend today (UTC)", []),
        }  # fmt: skip

    def _collect(self) -> Iterator[Metric]:
        from yggcelery.broker import queued_by_priority
        from yggcelery.cloud import RedisSpendLedger
        from yggcelery.status import ready_by_priority, worker_view

        g = self._gauges()
        active, online = worker_view(self.app, timeout_s=1.0)
        queued = queued_by_priority(self.app, self.settings, list(self.settings.hosts))
        for name, host in self.settings.hosts.items():
            busy = active.get(name, 0)
            for level, count in queued[name].items():
                g["depth"].add_metric([name, level.removeprefix("p")], count)
            g["busy"].add_metric([name], busy)
            g["free"].add_metric([name], max(host.slots - busy, 0))
            g["online"].add_metric([name], 1 if name in online else 0)
            g["up"].add_metric([name], 1 if self.health.is_up(name) else 0)
            util = self.gpu.utilization(name, host, busy=busy)
            if util is not None:
                g["gpu"].add_metric([name], util)
        for level, count in ready_by_priority(self.store, self.settings).items():
            g["ready"].add_metric([level.removeprefix("p")], count)
        g["spend"].add_metric([], RedisSpendLedger(self.client).spent_today())
        yield from g.values()
        yield duration_family(self.client)

    def close(self) -> None:
        self.gpu.close()
        self.health.close()


class _NoRedis:
    """Stands in for Redis in :meth:`YggCollector.describe`: an empty histogram."""

    def hgetall(self, name: str) -> dict[bytes, bytes]:
        return {}


# --- the HTTP endpoint ------------------------------------------------------------------------


class MetricsServer:
    """The ``/metrics`` endpoint in a daemon thread; :meth:`close` stops it and frees the port."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, collector: YggCollector):
        self.server = server
        self.thread = thread
        self.collector = collector

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def __repr__(self) -> str:
        return f"<MetricsServer port={self.port}>"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.collector.close()


def make_collector(settings: Settings) -> YggCollector:
    """A collector with its own app, store, health probe and Redis client (its own thread's)."""
    from yggcelery.beads import open_store
    from yggcelery.celery_app import make_app
    from yggcelery.health import HostHealth
    from yggcelery.ledger import redis_for

    return YggCollector(
        settings,
        app=make_app(settings),
        store=open_store(settings),
        health=HostHealth(settings),
        client=redis_for(settings),
    )


def start_metrics_server(
    settings: Settings, *, address: str | None = None, port: int | None = None
) -> MetricsServer | None:
    """Serve ``/metrics`` on ``settings.metrics_address:metrics_port`` (arguments override;
    port 0 in settings: off)."""
    address = settings.metrics_address if address is None else address
    port = settings.metrics_port if port is None else port
    if port == 0:
        log.info("metrics: disabled (metrics_port = 0)")
        return None
    collector = make_collector(settings)
    registry = CollectorRegistry()
    registry.register(collector)
    server, thread = start_http_server(port, addr=address, registry=registry)
    log.info("metrics: http://%s:%s/metrics", address, server.server_port)
    return MetricsServer(server, thread, collector)
