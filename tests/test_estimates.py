"""Service estimates per (host, kind): seeded from settings, moved by measured durations."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis

from yggcelery.estimates import (
    ESTIMATES_KEY,
    Estimate,
    Estimates,
    MemoryEstimates,
    RedisEstimates,
    ewma,
    seed_s,
)
from yggcelery.settings import Settings, load_settings
from yggcelery.testing.redis import RedisServer


@pytest.fixture
def settings(redis_db: RedisServer) -> Settings:
    """The seed fleet with fenrir allowed code at 0.5, estimates on the test Redis."""
    hosts = {name: host.model_dump() for name, host in load_settings().hosts.items()}
    hosts["fenrir-chat"]["overflow"] = {"code": 0.5}
    return load_settings(
        hosts=hosts,
        result_backend=redis_db.url(1),
        scheduling={"expected_s": {"code": 10.0, "text": 6.0}, "estimate_weight": 0.2},
    )


@pytest.fixture(params=["memory", "redis"])
def make_estimates(request: pytest.FixtureRequest, settings: Settings) -> Callable[[], Estimates]:
    """Factory: each call is another dispatcher's view (Redis: shared; memory: its own)."""
    memory = MemoryEstimates(settings)
    if request.param == "memory":
        return lambda: memory
    return lambda: RedisEstimates.from_settings(settings)


def test_the_seed_is_the_kinds_expected_time_over_the_hosts_speed(settings: Settings) -> None:
    """Code takes 10 s on skadi, 10 / 0.5 on fenrir; an unlisted kind takes the default."""
    assert seed_s(settings, "skadi-code", "code") == 10.0
    assert seed_s(settings, "fenrir-chat", "code") == 20.0
    default_s = settings.scheduling.default_expected_s
    assert seed_s(settings, "surtr-reasoning", "reasoning") == default_s


def test_ewma_moves_part_of_the_way() -> None:
    """A weight of 0.25 moves the estimate a quarter of the way to the sample."""
    assert ewma(10.0, 30.0, weight=0.25) == 15.0
    assert ewma(10.0, 30.0, weight=1.0) == 30.0


def test_durations_move_the_estimate_from_its_seed(make_estimates: Callable[[], Estimates]) -> None:
    """Starting at the seed, each duration moves the estimate by the configured weight."""
    estimates = make_estimates()
    assert estimates.table().expected_s("skadi-code", "code") == 10.0
    assert estimates.observe("skadi-code", "code", 20.0) == pytest.approx(12.0)
    assert estimates.observe("skadi-code", "code", 20.0) == pytest.approx(13.6)
    table = make_estimates().table()
    assert table.expected_s("skadi-code", "code") == pytest.approx(13.6)
    assert table.expected_s("fenrir-chat", "code") == 20.0  # another (host, kind): untouched


def test_a_duration_that_is_not_a_time_changes_nothing(
    make_estimates: Callable[[], Estimates],
) -> None:
    """NaN, infinity and negative durations are ignored; zero is a real (instant) duration."""
    estimates = make_estimates()
    for bad in (float("nan"), float("inf"), -1.0):
        assert estimates.observe("skadi-code", "code", bad) == 10.0
    assert estimates.observe("skadi-code", "code", 0.0) == pytest.approx(8.0)


def test_rows_list_every_host_and_kind_with_where_the_figure_comes_from(
    make_estimates: Callable[[], Estimates],
) -> None:
    """``ygg status`` rows: own kinds then overflow kinds, measured or still the seed."""
    estimates = make_estimates()
    estimates.observe("fenrir-chat", "code", 30.0)
    rows = estimates.table().rows()
    assert [(r.host, r.kind) for r in rows] == [
        ("surtr-reasoning", "reasoning"),
        ("fenrir-chat", "text"),
        ("fenrir-chat", "code"),
        ("skadi-code", "code"),
    ]
    assert rows[2] == Estimate(host="fenrir-chat", kind="code", expected_s=22.0, measured=True)
    assert not rows[3].measured


def test_concurrent_observations_are_never_lost(settings: Settings) -> None:
    """Four dispatchers observing at once: the estimate is that of all 100 observations."""
    settings = settings.model_copy(
        update={"scheduling": settings.scheduling.model_copy(update={"estimate_weight": 0.05})}
    )

    def observe() -> None:
        estimates = RedisEstimates(redis.Redis.from_url(settings.result_backend), settings)
        for _ in range(25):
            estimates.observe("skadi-code", "code", 20.0)

    threads = [threading.Thread(target=observe) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    expected = 20.0 - 10.0 * 0.95**100
    table = RedisEstimates.from_settings(settings).table()
    assert table.expected_s("skadi-code", "code") == pytest.approx(expected, rel=1e-12)


def test_entries_that_are_not_estimates_are_ignored(settings: Settings) -> None:
    """A hand-edited or foreign field in the hash leaves the seed in place."""
    client = redis.Redis.from_url(settings.result_backend)
    client.hset(ESTIMATES_KEY, mapping={"junk": "1", '["skadi-code", "code"]': "fast"})
    client.hset(ESTIMATES_KEY, '["fenrir-chat", "text"]', "7.5")
    table = RedisEstimates.from_settings(settings).table()
    assert table.expected_s("skadi-code", "code") == 10.0
    assert table.expected_s("fenrir-chat", "text") == 7.5
