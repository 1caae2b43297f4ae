"""The dispatcher's wake-up on stored results, against a real Redis result backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import states

from yggcelery.celery_app import make_app
from yggcelery.localredis import RedisServer
from yggcelery.settings import Settings, load_settings
from yggcelery.wakeup import ResultWakeup


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own: the test restarts it."""
    with RedisServer() as server:
        yield server


def settings_on(server: RedisServer) -> Settings:
    return load_settings().model_copy(
        update={"broker_url": server.url(0), "result_backend": server.url(1)}
    )


def test_a_stored_result_of_ours_wakes_the_nap_and_others_do_not(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    settings = settings_on(own_redis)
    app = make_app(settings)
    wakeup = ResultWakeup.for_app(app, settings)
    try:
        assert wakeup.start()
        app.backend.store_result("not-ours-1", {"x": 1}, states.SUCCESS)
        assert not wakeup.event.wait(timeout=1.0)
        app.backend.store_result("ygg:bd-1:1", {"x": 1}, states.SUCCESS)
        assert wakeup.event.wait(timeout=10.0)
        wakeup.nap(threading.Event(), 30.0)  # returns at once: the event is set
        assert not wakeup.event.is_set()  # and the nap cleared it for the next one
    finally:
        wakeup.close()
    assert not wakeup.running


def test_the_wake_up_comes_back_by_itself_after_redis_restarts(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """Redis down for a second: the subscription is made again, and results wake the nap."""
    settings = settings_on(own_redis)
    app = make_app(settings)
    wakeup = ResultWakeup.for_app(app, settings)
    try:
        assert wakeup.start()
        own_redis.restart(down_s=1.0)
        woke = False
        for attempt in range(40):  # until redis-py has subscribed again
            app.backend.store_result(f"ygg:bd-2:{attempt + 1}", {"x": 1}, states.SUCCESS)
            if wakeup.event.wait(timeout=0.5):
                woke = True
                break
        assert woke
        assert wakeup.running
    finally:
        wakeup.close()


def test_a_stop_ends_the_nap(own_redis: RedisServer, tmp_path: Path) -> None:
    settings = settings_on(own_redis)
    wakeup = ResultWakeup.for_app(make_app(settings), settings)
    stop = threading.Event()
    stop.set()
    try:
        wakeup.nap(stop, 60.0)  # would hang the test for a minute if stop were ignored
    finally:
        wakeup.close()
