"""Which model hosts are up: the shared circuit breaker first, then a cheap cached probe.

The dispatcher asks before routing (a kind whose only host is down goes to the cloud fallback);
``ygg status`` and the metrics report it. A probe is one ``GET`` of the server's version or model
list with a short timeout, cached for a few seconds so a poll loop does not hammer a dead host.
"""

from __future__ import annotations

import time

import httpx

from yggcelery.connections import redis_for
from yggcelery.llm.breaker import CircuitBreaker, CircuitState, RedisBreakerState
from yggcelery.llm.wire import PROBE_PATH
from yggcelery.settings import HostSettings, Settings


class HostHealth:
    """Up/down per host, from the breaker shared with the workers and a cached HTTP probe."""

    def __init__(
        self,
        settings: Settings,
        *,
        breaker: CircuitBreaker | None = None,
        cache_s: float = 5.0,
        probe_timeout_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.breaker = breaker or CircuitBreaker(
            RedisBreakerState(redis_for(settings)),
            failures=settings.retry.breaker_failures,
            cooldown_s=settings.retry.breaker_cooldown_s,
        )
        self.cache_s = cache_s
        self._http = httpx.Client(timeout=probe_timeout_s)
        self._seen: dict[str, tuple[float, bool]] = {}

    def __repr__(self) -> str:
        return f"<HostHealth down={sorted(self.down_hosts())}>"

    def is_up(self, name: str) -> bool:
        if self.breaker.state(name) is CircuitState.OPEN:
            return False
        checked_at, up = self._seen.get(name, (0.0, True))
        if time.monotonic() - checked_at > self.cache_s:
            up = self._probe(self.settings.hosts[name])
            self._seen[name] = (time.monotonic(), up)
        return up

    def down_hosts(self) -> set[str]:
        return {name for name in self.settings.hosts if not self.is_up(name)}

    def _probe(self, host: HostSettings) -> bool:
        try:
            response = self._http.get(host.base_url + PROBE_PATH[host.dialect])
        except httpx.HTTPError:
            return False
        return response.status_code < 500

    def close(self) -> None:
        self._http.close()
