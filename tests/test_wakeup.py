"""The dispatcher's wake-up on stored results, against a real Redis result backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery import states

from yggcelery.celery_app import make_app
from yggcelery.dispatch.wakeup import ResultWakeup
from yggcelery.settings import load_settings
from yggcelery.testing.redis import RedisServer


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own: a test restarts it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def app_and_wakeup(own_redis: RedisServer) -> Iterator[tuple[Any, ResultWakeup]]:
    """A Celery app whose result backend is ``own_redis``, and the wake-up on it (closed after)."""
    settings = load_settings().model_copy(
        update={"broker_url": own_redis.url(0), "result_backend": own_redis.url(1)}
    )
    app = make_app(settings)
    wakeup = ResultWakeup.for_app(app, settings)
    try:
        yield app, wakeup
    finally:
        wakeup.close()
    assert not wakeup.running


def test_a_stored_result_of_ours_wakes_the_nap_and_others_do_not(
    app_and_wakeup: tuple[Any, ResultWakeup],
) -> None:
    app, wakeup = app_and_wakeup
    assert wakeup.start()
    app.backend.store_result("not-ours-1", {"x": 1}, states.SUCCESS)
    assert not wakeup.event.wait(timeout=1.0)
    app.backend.store_result("ygg:bd-1:1", {"x": 1}, states.SUCCESS)
    assert wakeup.event.wait(timeout=10.0)
    wakeup.nap(threading.Event(), 30.0)  # returns at once: the event is set
    assert not wakeup.event.is_set()  # and the nap cleared it for the next one


def test_a_task_that_only_started_does_not_wake_the_nap(
    app_and_wakeup: tuple[Any, ResultWakeup],
) -> None:
    """``task_track_started`` stores STARTED as each task begins: no slot is freed, no poll."""
    app, wakeup = app_and_wakeup
    assert wakeup.start()
    app.backend.store_result("ygg:bd-3:1", None, states.STARTED)
    assert not wakeup.event.wait(timeout=1.0)
    app.backend.store_result("ygg:bd-3:1", {"x": 1}, states.FAILURE)
    assert wakeup.event.wait(timeout=10.0)


def test_the_wake_up_comes_back_by_itself_after_redis_restarts(
    app_and_wakeup: tuple[Any, ResultWakeup], own_redis: RedisServer
) -> None:
    """Redis down for a second: the subscription is made again, and results wake the nap."""
    app, wakeup = app_and_wakeup
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


def test_a_stop_ends_the_nap(app_and_wakeup: tuple[Any, ResultWakeup]) -> None:
    """A signal sets `stop` while the loop naps for ten minutes: the nap ends."""
    _, wakeup = app_and_wakeup
    stop = threading.Event()
    napping = threading.Thread(target=wakeup.nap, args=(stop, 600.0), daemon=True)
    napping.start()
    stop.set()
    napping.join(timeout=30.0)  # a give-up bound, far below the nap's ten minutes
    assert not napping.is_alive()
