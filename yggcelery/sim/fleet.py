"""A fleet of simulated hosts served from one background thread with its own asyncio loop.

::

    with SimFleet.from_settings(settings, time_scale=0.01, free_ports=True) as fleet:
        settings = load_settings(hosts=fleet.host_overrides())
        fleet["skadi-code"].down(for_s=2.0)
        print(fleet["skadi-code"].status()["utilisation"])
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any

from yggcelery.settings import HostSettings, Settings
from yggcelery.sim.config import SimHostConfig
from yggcelery.sim.host import SimHost

log = logging.getLogger(__name__)


class SimFleet:
    """Simulated hosts by name, all served on one event loop in one daemon thread."""

    def __init__(
        self,
        configs: Iterable[SimHostConfig],
        *,
        settings: dict[str, HostSettings] | None = None,
    ) -> None:
        self.hosts = {config.name: SimHost(config) for config in configs}
        if not self.hosts:
            raise ValueError("a sim fleet needs at least one host")
        self._settings = settings or {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SimFleet {state} hosts={','.join(self.hosts)}>"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        time_scale: float | None = None,
        free_ports: bool = False,
        names: Iterable[str] | None = None,
    ) -> SimFleet:
        """The configured hosts (or those in ``names``), on their ports or on free ones."""
        chosen = list(names) if names else list(settings.hosts)
        configs = [
            SimHostConfig.from_settings(
                name,
                settings.host(name),
                settings.sim,
                port=0 if free_ports else None,
                time_scale=time_scale,
            )
            for name in chosen
        ]
        return cls(configs, settings={name: settings.hosts[name] for name in chosen})

    def __getitem__(self, name: str) -> SimHost:
        return self.hosts[name]

    def __iter__(self) -> Iterator[SimHost]:
        return iter(self.hosts.values())

    def __len__(self) -> int:
        return len(self.hosts)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def base_urls(self) -> dict[str, str]:
        return {name: host.url for name, host in self.hosts.items()}

    def host_overrides(self) -> dict[str, HostSettings]:
        """The same hosts pointing at the simulator, for ``load_settings(hosts=...)``."""
        out = {}
        for name, host in self.hosts.items():
            known = self._settings.get(name)
            if known is None:
                out[name] = host.config.host_settings(host.url)
            else:
                out[name] = known.model_copy(update={"base_url": host.url})
        return out

    def start(self) -> SimFleet:
        """Start every host; returns once all listen (raises if one cannot)."""
        if self.running:
            return self
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="ygg-sim", daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout=30)
        except BaseException:
            self._thread.join(timeout=10)
            self._thread = None
            raise
        log.debug("sim fleet started: %s", self.base_urls)
        return self

    def stop(self) -> None:
        """Stop every host and the thread; the ports are free afterwards."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop_all(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._loop = self._thread = None

    def __enter__(self) -> SimFleet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self, ready: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_all())
        except BaseException as exc:
            loop.run_until_complete(self._stop_all())
            loop.close()
            ready.set_exception(exc)
            return
        self._loop = loop
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            _cancel_leftovers(loop)
            loop.close()

    async def _start_all(self) -> None:
        for host in self.hosts.values():
            await host.start()

    async def _stop_all(self) -> None:
        for host in self.hosts.values():
            await host.stop()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks: set[asyncio.Task[Any]] = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
