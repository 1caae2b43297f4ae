"""Redis connections: one client (and connection pool) per process and URL.

The ledger, the breaker, the cloud budget, the wake-up and the exporter all talk to the Redis that
holds the result backend; they share its client through :func:`redis_for`.
"""

from __future__ import annotations

from functools import cache

import redis

from yggcelery.sentinel import from_url
from yggcelery.settings import Settings


@cache
def redis_client(url: str, master: str = "mymaster") -> redis.Redis:
    """One Redis client (and connection pool) per process and URL (``master``: the primary's
    name for a ``sentinel://`` URL)."""
    return from_url(url, master=master, health_check_interval=10, socket_timeout=10)


def redis_for(settings: Settings) -> redis.Redis:
    """The Redis client of the result backend (one per process and URL)."""
    return redis_client(settings.result_backend, settings.sentinel_master)
