"""The ``/metrics`` endpoint of ``ygg loop`` (``metrics_address:metrics_port``)."""

from __future__ import annotations

import errno
import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from yggcelery.beads import open_store
from yggcelery.celery_app import make_app
from yggcelery.connections import redis_for
from yggcelery.errors import AddressInUse
from yggcelery.exporter.collector import YggCollector
from yggcelery.llm.health import HostHealth
from yggcelery.settings import Settings

log = logging.getLogger(__name__)


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
    port 0 in settings: off); :class:`AddressInUse` when another process holds the port."""
    address = settings.metrics_address if address is None else address
    port = settings.metrics_port if port is None else port
    if port == 0:
        log.info("metrics: disabled (metrics_port = 0)")
        return None
    collector = make_collector(settings)
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        collector.close()
        if exc.errno == errno.EADDRINUSE:
            setting = "metrics_port (YGG_METRICS_PORT; 0 turns /metrics off)"
            raise AddressInUse("metrics", address, port, setting=setting) from exc
        raise
    log.info("metrics: http://%s:%s/metrics", address, server.server_port)
    return MetricsServer(server, thread, collector)
