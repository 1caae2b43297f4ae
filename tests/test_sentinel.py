"""Sentinel URLs: parsing, the settings that accept them, and a client through a real Sentinel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from yggcelery.celery_app import celery_config
from yggcelery.errors import ConfigError
from yggcelery.sentinel import (
    SentinelUrl,
    from_url,
    is_sentinel_url,
    sentinel_client,
    transport_options,
)
from yggcelery.settings import load_settings
from yggcelery.testing.redis import RedisServer, local_sentinel

URL = "sentinel://:s3cret@10.0.0.1:26379/1;sentinel://10.0.0.2:26380/1;sentinel://10.0.0.3/1"


def test_a_sentinel_url_lists_every_sentinel_with_the_first_entrys_db_and_password() -> None:
    """Every entry's address (26379 by default); db and password come from the first entry."""
    parsed = SentinelUrl.parse(URL)
    assert parsed.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379))
    assert (parsed.db, parsed.password) == (1, "s3cret")


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("sentinel://a:1/0;redis://b:2/0", "redis://b:2/0"),
        ("sentinel://a:1/zero", "zero"),
        (";", "empty"),
    ],
)
def test_a_malformed_sentinel_url_is_a_config_error_naming_the_entry(url: str, names: str) -> None:
    """A non-Sentinel entry, a database that is not a number, nothing at all: ConfigError."""
    with pytest.raises(ConfigError, match=names):
        SentinelUrl.parse(url)


def test_settings_accept_sentinel_urls_as_a_redis_broker() -> None:
    """sentinel:// passes validation for both URLs and counts as Redis (priority lists etc.)."""
    settings = load_settings(broker_url=URL, result_backend=URL, sentinel_master="ygg")
    assert settings.broker_kind == "redis" and is_sentinel_url(settings.broker_url)
    assert transport_options(settings.broker_url, settings.sentinel_master) == {
        "master_name": "ygg"
    }
    assert transport_options("redis://h:6379/0", "ygg") == {}


def test_celery_is_told_the_primarys_name_for_the_broker_and_the_result_backend() -> None:
    """kombu and Celery read master_name from their transport options, not from the URL."""
    config = celery_config(load_settings(broker_url=URL, result_backend=URL, sentinel_master="ygg"))
    assert config["broker_transport_options"]["master_name"] == "ygg"
    assert config["result_backend_transport_options"]["master_name"] == "ygg"


@pytest.fixture
def sentinel_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server and one Sentinel watching it as ``ygg``, both on loopback."""
    with RedisServer() as primary, local_sentinel(primary, master="ygg", data_dir=tmp_path,
                                                  db=2) as url:  # fmt: skip
        yield url


def test_a_client_through_the_sentinel_reaches_the_primary_and_its_database(
    sentinel_url: str,
) -> None:
    """sentinel_client asks the Sentinel for the primary and uses the URL's database."""
    client = sentinel_client(sentinel_url, master="ygg", socket_timeout=2)
    client.set("k", "v")
    assert client.get("k") == b"v"
    assert client.connection_pool.connection_kwargs["db"] == 2
    assert from_url(sentinel_url, master="ygg").get("k") == b"v"


def test_from_url_opens_plain_redis_urls_as_before(redis_db: RedisServer) -> None:
    """A redis:// URL needs no Sentinel; the master name is not used."""
    client = from_url(redis_db.url(0), master="unused")
    assert client.ping()
