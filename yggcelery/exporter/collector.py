"""The dispatcher's Prometheus metrics (``ygg loop`` serves them on ``metrics_port``).

Every value is read when Prometheus scrapes (:class:`YggCollector`), so nothing goes stale:

========================================  =========================================================
``ygg_queue_depth{host,priority}``        messages waiting in the host's broker lists, p "0".."4"
``ygg_slots_busy{host}``, ``_free``       tasks running on the host's worker / slots left
``ygg_worker_online{host}``               a worker answers the broadcast for the host's queue (1/0)
``ygg_host_up{host}``                     the model server answers (:class:`HostHealth`, 1/0)
``ygg_beads_ready{priority}``             ready issues in Beads not yet dispatched
``ygg_gpu_utilization{host}``             GPU busy share 0..1 (see :class:`GpuProbe`)
``ygg_slots_configured{host}``            the host's ``slots`` in the settings
``ygg_slots_effective{host}``             slots to fill now, from its worker's live reading
``ygg_server_waiting{host}``              requests waiting inside the host's model server
``ygg_cloud_spend_usd_today``             cloud fallback spend of the UTC day
``ygg_task_duration_seconds{host,kind}``  histogram of finished tasks' run time
========================================  =========================================================

The last three come from the live capacity readings the workers write
(:mod:`yggcelery.capacity.live`): without a fresh one, effective = configured and the server
queue has no series; so has the GPU of a host whose server is down.

Task durations come from :mod:`yggcelery.exporter.durations`: a Redis hash shared by every
process that reconciles, so the histogram counts each closed task once, whoever closed it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import redis
from celery import Celery
from prometheus_client.core import GaugeMetricFamily, Metric

from yggcelery.beads import BeadsStore
from yggcelery.capacity.live import LiveCapacity, effective_slots_by_host, read_capacity
from yggcelery.exporter.durations import duration_family
from yggcelery.exporter.gpu import GPU_HELP, GpuProbe
from yggcelery.llm.cloud import RedisSpendLedger
from yggcelery.llm.health import HostHealth
from yggcelery.queues import queued_by_priority
from yggcelery.settings import Settings
from yggcelery.status import ready_by_priority, worker_view


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
            "configured": gauge("ygg_slots_configured", "The host's slots in the settings",
                                ["host"]),
            "effective": gauge(
                "ygg_slots_effective",
                "Slots to fill now: below configured while the model server runs fewer at once,"
                " or keeps requests waiting while all slots are busy", ["host"],
            ),
            "waiting": gauge("ygg_server_waiting", "Requests waiting inside the model server",
                             ["host"]),
            "spend": gauge("ygg_cloud_spend_usd_today", "Cloud fallback spend today (UTC)", []),
        }  # fmt: skip

    def _collect(self) -> Iterator[Metric]:
        g = self._gauges()
        active, online = worker_view(self.app, timeout_s=1.0)
        queued = queued_by_priority(self.app, self.settings, list(self.settings.hosts))
        live = read_capacity(self.client, list(self.settings.hosts))
        effective = effective_slots_by_host(self.settings, live)
        for name, host in self.settings.hosts.items():
            busy, up = active.get(name, 0), self.health.is_up(name)
            for level, count in queued[name].items():
                g["depth"].add_metric([name, level.removeprefix("p")], count)
            g["busy"].add_metric([name], busy)
            g["free"].add_metric([name], max(host.slots - busy, 0))
            g["online"].add_metric([name], 1 if name in online else 0)
            g["up"].add_metric([name], 1 if up else 0)
            _add_capacity(
                g, name, configured=host.slots, effective=effective[name], live=live[name]
            )
            util = self.gpu.utilization(name, host, busy=busy, live=live[name]) if up else None
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


def _add_capacity(
    g: dict[str, GaugeMetricFamily],
    name: str,
    *,
    configured: int,
    effective: int,
    live: LiveCapacity | None,
) -> None:
    """Configured and effective slots, and the server's own queue when its worker read it."""
    g["configured"].add_metric([name], configured)
    g["effective"].add_metric([name], effective)
    if live is not None and live.waiting is not None:
        g["waiting"].add_metric([name], live.waiting)


class _NoRedis:
    """Stands in for Redis in :meth:`YggCollector.describe`: an empty histogram."""

    def hgetall(self, name: str) -> dict[bytes, bytes]:
        return {}
