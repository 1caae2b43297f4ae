"""Redis Sentinel URLs as Celery and kombu write them, and the Redis client behind one.

A Sentinel URL lists every Sentinel, separated by ``;``, each with the database (and a
password, if Redis has one) of the *primary* they watch::

    sentinel://10.0.0.1:26379/1;sentinel://10.0.0.2:26379/1;sentinel://10.0.0.3:26379/1

The name the Sentinels know the primary by (``sentinel monitor <name> ...``) is not in the URL:
kombu and Celery read it from their transport options (``master_name``), and ygg from
``Settings.sentinel_master``. Like Celery, the database and password come from the first
entry. :func:`sentinel_client` asks the Sentinels where the primary is and reconnects there
after a failover (redis-py's ``SentinelConnectionPool``); :func:`from_url` takes any URL ygg
accepts, so the places that open Redis themselves need no branch of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from yggcelery.errors import ConfigError

SCHEME = "sentinel"
DEFAULT_PORT = 26379
_SEPARATOR = ";"


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names Redis through Sentinels."""
    return urlsplit(url).scheme == SCHEME


@dataclass(frozen=True)
class SentinelUrl:
    """The parts of a Sentinel URL: every Sentinel's address, the database, the password."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        """Parse ``url``; :class:`ConfigError` naming the entry that is not a Sentinel URL."""
        entries = [entry for entry in url.split(_SEPARATOR) if entry.strip()]
        if not entries:
            raise ConfigError(f"empty Sentinel URL {url!r}")
        sentinels = tuple(_address(entry) for entry in entries)
        first = urlsplit(entries[0])
        path = first.path.strip("/")
        if path and not path.isdigit():
            raise ConfigError(f"Sentinel URL {entries[0]!r}: database {path!r} is not a number")
        password = unquote(first.password) if first.password else None
        return cls(sentinels, int(path or 0), password)


def _address(entry: str) -> tuple[str, int]:
    parts = urlsplit(entry.strip())
    if parts.scheme != SCHEME or not parts.hostname:
        raise ConfigError(f"not a Sentinel URL entry: {entry!r} (expected sentinel://host:port)")
    return parts.hostname, parts.port or DEFAULT_PORT


def sentinel_client(url: str, *, master: str, **client_kwargs: object) -> redis.Redis:
    """A client of the primary named ``master`` that the Sentinels in ``url`` point at.

    ``client_kwargs`` (``socket_timeout``, ``health_check_interval``, ...) apply to the
    connections to the primary; the Sentinels are asked with the same socket timeout.
    """
    parsed = SentinelUrl.parse(url)
    timeout = client_kwargs.get("socket_timeout")
    # redis-py types Sentinel from 8.0 on; before, its calls are untyped.
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        list(parsed.sentinels), sentinel_kwargs={"socket_timeout": timeout} if timeout else None
    )
    kwargs: dict[str, Any] = dict(client_kwargs)
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
        master, db=parsed.db, password=parsed.password, **kwargs
    )
    return client


def from_url(url: str, *, master: str, **client_kwargs: object) -> redis.Redis:
    """A Redis client for any URL ygg accepts: through the Sentinels for ``sentinel://``,
    else :meth:`redis.Redis.from_url`. Use it wherever a ygg process opens Redis itself."""
    if is_sentinel_url(url):
        return sentinel_client(url, master=master, **client_kwargs)
    client: redis.Redis = redis.Redis.from_url(url, **client_kwargs)
    return client


def transport_options(url: str, master: str) -> dict[str, str]:
    """What kombu and Celery need besides ``url``: the primary's name, for a Sentinel URL."""
    return {"master_name": master} if is_sentinel_url(url) else {}
