"""Service estimates per (host, kind): seeded from settings, moved by measured durations."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis

from yggcelery.estimates import (
    ESTIMATES_KEY,
    SAMPLES_KEY,
    Estimate,
    Estimates,
    MemoryEstimates,
    RedisEstimates,
    ewma,
    seed_s,
    weight_for,
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


def test_the_first_durations_are_averaged_then_each_moves_the_estimate_by_the_weight() -> None:
    """Weight 0.2: the first duration counts whole, the first five are a running mean."""
    weights = [weight_for(n, weight=0.2) for n in range(1, 8)]
    assert weights == [1.0, 0.5, 1 / 3, 0.25, 0.2, 0.2, 0.2]
    assert weight_for(1, weight=0.9) == 1.0 and weight_for(2, weight=0.9) == 0.9


def test_durations_replace_the_seed_then_move_the_estimate(
    make_estimates: Callable[[], Estimates],
) -> None:
    """The seed stands until a duration is measured; the first replaces it, the first five
    are averaged (20, 10, 30, 20, 20: 20), the sixth moves it by the weight (0.2 of 40 - 20)."""
    estimates = make_estimates()
    assert estimates.table().expected_s("skadi-code", "code") == 10.0
    assert estimates.observe("skadi-code", "code", 20.0) == pytest.approx(20.0)
    assert estimates.observe("skadi-code", "code", 10.0) == pytest.approx(15.0)
    for sample in (30.0, 20.0, 20.0):
        estimates.observe("skadi-code", "code", sample)
    assert make_estimates().table().expected_s("skadi-code", "code") == pytest.approx(20.0)
    assert estimates.observe("skadi-code", "code", 40.0) == pytest.approx(24.0)
    table = make_estimates().table()
    assert table.expected_s("skadi-code", "code") == pytest.approx(24.0)
    assert table.expected_s("fenrir-chat", "code") == 20.0  # another (host, kind): untouched


def test_an_estimate_stored_without_a_sample_count_is_settled(settings: Settings) -> None:
    """An estimate kept before sample counts were (a running fleet, upgraded) is not thrown
    away by the next duration: that one moves it by the weight, as before."""
    client = redis.Redis.from_url(settings.result_backend)
    client.hset(ESTIMATES_KEY, '["skadi-code", "code"]', "12.0")
    estimates = RedisEstimates.from_settings(settings)
    assert estimates.observe("skadi-code", "code", 22.0) == pytest.approx(14.0)


def test_an_estimate_deleted_by_hand_starts_again_from_its_first_duration(
    settings: Settings,
) -> None:
    """Deleting an estimate (to forget a model that was swapped) forgets its count too: the
    next duration replaces the seed, as on a fresh fleet."""
    estimates = RedisEstimates.from_settings(settings)
    for sample in (20.0, 20.0, 20.0):
        estimates.observe("skadi-code", "code", sample)
    redis.Redis.from_url(settings.result_backend).hdel(ESTIMATES_KEY, '["skadi-code", "code"]')
    assert estimates.observe("skadi-code", "code", 50.0) == pytest.approx(50.0)


def test_a_duration_that_is_not_a_time_changes_nothing(
    make_estimates: Callable[[], Estimates],
) -> None:
    """NaN, infinity and negative durations are ignored; zero is a real (instant) duration."""
    estimates = make_estimates()
    for bad in (float("nan"), float("inf"), -1.0):
        assert estimates.observe("skadi-code", "code", bad) == 10.0
    assert estimates.observe("skadi-code", "code", 4.0) == pytest.approx(4.0)  # the first
    assert estimates.observe("skadi-code", "code", 0.0) == pytest.approx(2.0)


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
    assert rows[2] == Estimate(host="fenrir-chat", kind="code", expected_s=30.0, measured=True)
    assert not rows[3].measured


def test_concurrent_observations_are_never_lost(settings: Settings) -> None:
    """Four dispatchers observing at once: all 100 observations are counted, and the
    estimate is the one 100 in a row give (past the first five, each moves it by 0.05)."""
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
    client = redis.Redis.from_url(settings.result_backend)
    assert int(client.hget(SAMPLES_KEY, '["skadi-code", "code"]') or 0) == 100  # type: ignore[arg-type]
    table = RedisEstimates.from_settings(settings).table()
    assert table.expected_s("skadi-code", "code") == pytest.approx(20.0, rel=1e-12)


def test_entries_that_are_not_estimates_are_ignored(settings: Settings) -> None:
    """A hand-edited or foreign field in the hash leaves the seed in place."""
    client = redis.Redis.from_url(settings.result_backend)
    client.hset(ESTIMATES_KEY, mapping={"junk": "1", '["skadi-code", "code"]': "fast"})
    client.hset(ESTIMATES_KEY, '["fenrir-chat", "text"]', "7.5")
    table = RedisEstimates.from_settings(settings).table()
    assert table.expected_s("skadi-code", "code") == 10.0
    assert table.expected_s("fenrir-chat", "text") == 7.5
