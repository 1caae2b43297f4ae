"""What a failure means (work/fate.py): a pure function, checked as a table of cases."""

from __future__ import annotations

import pytest
import redis
from billiard.exceptions import WorkerLostError
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from kombu.exceptions import OperationalError

from yggcelery.errors import (
    CircuitOpen,
    CloudBudgetExceeded,
    ConfigError,
    HostBusy,
    HostRejected,
    HostUnavailable,
    TaskCrashed,
    WorkerLost,
)
from yggcelery.settings import RetrySettings
from yggcelery.work.fate import Failure, Fate, Verdict, backoff_s, fate

RETRY = RetrySettings(
    max_retries=3, backoff_s=1.0, backoff_max_s=3.0, max_attempts=3, breaker_cooldown_s=30.0
)
BUSY = Failure.of(HostBusy("h1", "HTTP 503 from http://h1/api/chat: server busy", status=503))
DOWN = Failure.of(HostUnavailable("h1", "cannot reach http://h1 (connection refused)"))
OPEN = Failure.of(CircuitOpen("h1", "circuit open"))
BAD = Failure.of(HostRejected("h1", "HTTP 400 from http://h1/api/chat: bad request", status=400))

# failure, try_no, failed_attempts, can_fall_back, expected verdict
CASES = {
    "permanent blocks at once": (BAD, 0, 0, True, Verdict(Fate.BLOCK, BAD.text)),
    "crash loop blocks": (
        Failure.of(TaskCrashed("bd-1: delivered 3 times")),
        None, 0, False,
        Verdict(Fate.BLOCK, "TaskCrashed: bd-1: delivered 3 times"),
    ),
    "transient, first try: backoff 1s": (BUSY, 0, 0, False, Verdict(Fate.RETRY, BUSY.text, 1.0)),
    "transient, second try: backoff 2s": (DOWN, 1, 0, True, Verdict(Fate.RETRY, DOWN.text, 2.0)),
    "transient, third try: backoff capped": (BUSY, 2, 0, False,
                                             Verdict(Fate.RETRY, BUSY.text, 3.0)),
    "circuit open, no cloud: wait the cooldown": (
        OPEN, 0, 0, False, Verdict(Fate.RETRY, OPEN.text, 30.0)
    ),
    "circuit open, cloud on: fall back now": (OPEN, 0, 0, True, Verdict(Fate.FALLBACK, OPEN.text)),
    "tries spent, cloud on: fall back": (BUSY, 3, 0, True, Verdict(Fate.FALLBACK, BUSY.text)),
    "tries spent, no cloud: requeue": (
        BUSY, 3, 0, False, Verdict(Fate.REQUEUE, f"attempt 1 failed: {BUSY.text}")
    ),
    "second attempt spent: requeue": (
        DOWN, 3, 1, False, Verdict(Fate.REQUEUE, f"attempt 2 failed: {DOWN.text}")
    ),
    "max_attempts spent: block": (
        BUSY, 3, 2, False, Verdict(Fate.BLOCK, f"{BUSY.text}; gave up after 3 attempts")
    ),
    "attempt over (reconcile): requeue": (
        BUSY, None, 0, False, Verdict(Fate.REQUEUE, f"attempt 1 failed: {BUSY.text}")
    ),
    "attempt over, max_attempts spent: block": (
        OPEN, None, 2, False, Verdict(Fate.BLOCK, f"{OPEN.text}; gave up after 3 attempts")
    ),
    "cloud budget spent is transient": (
        Failure.of(CloudBudgetExceeded("daily budget $5.00 spent")), None, 0, False,
        Verdict(Fate.REQUEUE, "attempt 1 failed: CloudBudgetExceeded: daily budget $5.00 spent"),
    ),
}  # fmt: skip


@pytest.mark.parametrize(("failure", "try_no", "failed", "cloud", "expected"),
                         CASES.values(), ids=CASES.keys())  # fmt: skip
def test_fate_of_each_failure(
    failure: Failure, try_no: int | None, failed: int, cloud: bool, expected: Verdict
) -> None:
    """Each row of the fate table gives its verdict, reason and delay."""
    verdict = fate(failure, try_no=try_no, failed_attempts=failed, retry=RETRY, can_fall_back=cloud)
    assert verdict == expected


def test_no_retries_configured_means_the_first_failure_ends_the_attempt() -> None:
    """max_retries 0: a transient failure on the first try requeues (or falls back) at once."""
    retry = RetrySettings(max_retries=0)
    assert fate(BUSY, try_no=0, failed_attempts=0, retry=retry).fate is Fate.REQUEUE
    verdict = fate(BUSY, try_no=0, failed_attempts=0, retry=retry, can_fall_back=True)
    assert verdict.fate is Fate.FALLBACK


def test_one_attempt_allowed_blocks_the_first_failed_attempt() -> None:
    """max_attempts 1: the first attempt whose tries are spent blocks the bead."""
    verdict = fate(DOWN, try_no=None, failed_attempts=0, retry=RetrySettings(max_attempts=1))
    assert verdict == Verdict(Fate.BLOCK, f"{DOWN.text}; gave up after 1 attempts")


def test_backoff_doubles_and_is_capped() -> None:
    """backoff_s × 2^try, never above backoff_max_s."""
    retry = RetrySettings(backoff_s=2.0, backoff_max_s=60.0)
    assert [backoff_s(n, retry) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]


@pytest.mark.parametrize(
    ("exc", "transient", "circuit_open"),
    [
        (HostBusy("h1", "HTTP 429"), True, False),
        (CircuitOpen("h1", "circuit open"), True, True),
        (WorkerLost("pool process died"), True, False),
        (SoftTimeLimitExceeded(), True, False),
        (TimeLimitExceeded(960.0), True, False),
        (WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL)."), True, False),
        (redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379"), True, False),
        (OperationalError("[Errno 111] Connection refused"), True, False),
        (HostRejected("h1", "HTTP 404"), False, False),
        (ConfigError("no host serves kind 'art'"), False, False),
        (RuntimeError("a bug"), False, False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_failure_of_an_exception_says_whether_it_passes(
    exc: BaseException, transient: bool, circuit_open: bool
) -> None:
    """Project errors by their class; Celery's time limits, lost workers and an unreachable
    broker or backend as transient; anything else (a bug) as permanent."""
    failure = Failure.of(exc)
    assert (failure.error, failure.transient, failure.circuit_open) == (
        type(exc).__name__, transient, circuit_open,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (
            {"exc_type": "WorkerLostError", "exc_message": ["Worker exited prematurely: signal 9"]},
            Failure("WorkerLostError", "Worker exited prematurely: signal 9", transient=True),
        ),
        (
            {"exc_type": "SoftTimeLimitExceeded", "exc_message": ["SoftTimeLimitExceeded()"]},
            Failure("SoftTimeLimitExceeded", "SoftTimeLimitExceeded()", transient=True),
        ),
        (
            {"exc_type": "TimeLimitExceeded", "exc_message": [960.0]},
            Failure("TimeLimitExceeded", "960.0", transient=True),
        ),
        (
            {"exc_type": "HostBusy", "exc_message": ["host h1: HTTP 503"]},
            Failure("HostBusy", "host h1: HTTP 503", transient=True),
        ),
        (
            {"exc_type": "CircuitOpen", "exc_message": ["host h1: circuit open"]},
            Failure("CircuitOpen", "host h1: circuit open", transient=True, circuit_open=True),
        ),
        (
            {"exc_type": "HostRejected", "exc_message": ["host h1: HTTP 400"]},
            Failure("HostRejected", "host h1: HTTP 400", transient=False),
        ),
        (
            {"exc_type": "TaskCrashed", "exc_message": "bd-1: delivered 3 times"},
            Failure("TaskCrashed", "bd-1: delivered 3 times", transient=False),
        ),
        ({"exc_type": "Path", "exc_message": []}, Failure("Path", "", transient=False)),
        ({}, Failure("Error", "", transient=False)),
    ],
    ids=lambda value: str(value.get("exc_type") or "empty") if isinstance(value, dict) else None,
)
def test_a_stored_celery_failure_reads_as_the_same_failure(
    stored: dict[str, object], expected: Failure
) -> None:
    """A failure from the result backend (``exc_type``/``exc_message``) is judged as the same
    exception raised in process: Celery's worker losses and time limits are transient."""
    assert Failure.stored(stored) == expected


def test_a_stored_failure_and_the_same_exception_in_process_have_the_same_fate() -> None:
    """Reconcile (stored) and the in-process dispatchers (exception) reach the same verdict."""
    exc = HostBusy("h1", "HTTP 503 from http://h1/api/chat: server busy", status=503)
    stored = {"exc_type": "HostBusy", "exc_message": list(exc.args)}
    for failed in range(RETRY.max_attempts):
        here = fate(Failure.of(exc), try_no=None, failed_attempts=failed, retry=RETRY)
        there = fate(Failure.stored(stored), try_no=None, failed_attempts=failed, retry=RETRY)
        assert here == there


def test_failure_text_names_the_error_and_its_message() -> None:
    """``HostBusy: host h1: ...``, and just the class name when there is no message."""
    assert BUSY.text == "HostBusy: host h1: HTTP 503 from http://h1/api/chat: server busy"
    assert Failure("WorkerLostError", "", transient=True).text == "WorkerLostError"
