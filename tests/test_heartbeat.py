"""Worker liveness: the pure rule reconcile applies to a started attempt, and real beats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from yggcelery.heartbeat import Beat, Heartbeat, fresh_beat, is_dead, read_beats
from yggcelery.settings import Settings
from yggcelery.testing.waiting import wait_until

T = "ygg:bd-1:1"


def test_a_silent_worker_is_dead() -> None:
    """No beat within worker_dead_s: whatever it was running is lost."""
    assert is_dead(T, 100.0, None, heartbeat_s=3.0)


def test_a_beat_from_before_the_start_says_nothing() -> None:
    """A worker that has just taken the task has not beaten since: not dead."""
    beat = Beat(at=101.0, boot=50.0, tasks=frozenset())
    assert not is_dead(T, 100.0, beat, heartbeat_s=3.0)


def test_a_later_beat_without_the_task_means_it_is_gone() -> None:
    """A beat one period after the start that does not list the task (restarted worker)."""
    beat = Beat(at=104.0, boot=102.0, tasks=frozenset({"ygg:other:1"}))
    assert is_dead(T, 100.0, beat, heartbeat_s=3.0)


def test_a_busy_worker_that_lists_the_task_is_alive() -> None:
    """A long task keeps its worker beating with the task listed: never declared dead."""
    beat = Beat(at=1000.0, boot=50.0, tasks=frozenset({T}), pids={T: 42})
    assert not is_dead(T, 100.0, beat, heartbeat_s=3.0)


def test_beats_round_trip_through_json() -> None:
    """What a worker writes is what reconcile reads, pool pids included."""
    beat = Beat(at=1.5, boot=1.0, tasks=frozenset({T}), pids={T: 7})
    assert Beat.from_json(beat.to_json()) == beat


def test_a_heartbeat_thread_beats_into_redis_and_lapses_when_stopped(
    make_settings: Callable[..., Settings],
) -> None:
    """A real Heartbeat against a real Redis: a fresh beat appears every heartbeat_s; after
    stop() the key expires by itself after worker_dead_s."""
    timeouts = {"task_soft_s": 50, "task_hard_s": 60, "visibility_s": 90, "lost_after_s": 120,
                "heartbeat_s": 0.2, "worker_dead_s": 1.0}  # fmt: skip
    settings = make_settings(timeouts=timeouts)
    client = redis.Redis.from_url(settings.result_backend)
    heartbeat = Heartbeat(settings, "skadi-code@test")
    thread = threading.Thread(target=heartbeat.run, daemon=True)
    thread.start()
    now = time.time()
    assert fresh_beat(client, "skadi-code@test", after=now, wait_s=5.0) is not None
    heartbeat.stop()
    thread.join(5)
    wait_until(lambda: read_beats(client, ["skadi-code@test"])["skadi-code@test"] is None,
               timeout_s=5, what="the beat lapsed")  # fmt: skip
