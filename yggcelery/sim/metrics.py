"""Prometheus metrics of one simulated host, in its own registry (``GET /metrics``).

Gauges read the live slot pool when scraped, so they never go stale; times are simulated seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric

from yggcelery.sim.gpu import SlotPool

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HostMetrics:
    """The metrics of one host, labelled with its name and model."""

    def __init__(self, *, host: str, model: str, pool: SlotPool) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"host": host, "model": model}

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, list(labels), registry=self.registry)

        gauge("ygg_sim_slots", "GPU decode slots").labels(**labels).set(pool.slots)
        gauge("ygg_sim_busy_slots", "slots decoding now").labels(**labels).set_function(
            lambda: pool.busy
        )
        gauge("ygg_sim_queue_length", "requests waiting for a slot").labels(**labels).set_function(
            lambda: pool.queued
        )
        gauge("ygg_sim_max_concurrency", "most slots busy at once since reset").labels(
            **labels
        ).set_function(lambda: pool.max_concurrency)
        gauge("ygg_sim_busy_slot_seconds", "simulated busy slot-seconds since reset").labels(
            **labels
        ).set_function(pool.busy_slot_s)
        gauge("ygg_sim_utilisation", "busy over available slot-seconds since reset").labels(
            **labels
        ).set_function(pool.utilisation)
        self._requests = Counter(
            "ygg_sim_requests",
            "model requests answered, by endpoint and HTTP status",
            [*labels, "endpoint", "status"],
            registry=self.registry,
        )
        self._service = Histogram(
            "ygg_sim_service_seconds",
            "simulated service time of served requests",
            list(labels),
            buckets=(0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300),
            registry=self.registry,
        )
        self._labels = labels

    def observe(self, *, endpoint: str, status: int, service_s: float | None) -> None:
        """Count one answered request; a served one also adds its simulated service time."""
        self._requests.labels(**self._labels, endpoint=endpoint, status=str(status)).inc()
        if service_s is not None and status == 200:
            self._service.labels(**self._labels).observe(service_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Families:
    """A collector of fixed, already built metric families (one scrape's worth)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render_families(families: Iterable[Metric]) -> bytes:
    """``families`` as Prometheus text, rendered by prometheus_client (names may hold colons)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)
