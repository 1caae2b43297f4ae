"""What a failure means: the one decision, for every dispatcher (dramatiq's single retry policy).

:func:`fate` is a pure function of the failure, where the attempt stands and the retry settings:

=====================================  ===========================================================
failure                                fate
=====================================  ===========================================================
permanent (bad request, crash loop)    ``BLOCK``: retrying cannot help
transient, tries left on this host     ``RETRY`` here after a backoff (the breaker's cooldown if
                                       its circuit is open)
transient, tries spent, cloud on       ``FALLBACK``: run it on the cloud now
transient, tries spent                 ``REQUEUE``: hand the bead back for a new attempt, or
                                       ``BLOCK`` once ``max_attempts`` attempts have failed
=====================================  ===========================================================

The Celery task asks it between tries and stores the error when the attempt is over; reconcile
asks it again for that stored failure (no tries left) and so reaches the same REQUEUE or BLOCK as
the asyncio and legacy dispatchers, which ask it in process. A worker that died is a failure too
(``WorkerLostError``, Celery's time limits): transient, as is a broker or result backend that
went away under the task.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
from kombu.exceptions import OperationalError

from yggcelery import errors
from yggcelery.settings import RetrySettings

#: Exceptions from outside yggcelery that mean "try again later" rather than "this bead is
#: broken": Celery's time limits and worker loss, and the broker or result backend away (Redis
#: restarting, loading its AOF, or out of reach) while the task read or wrote it.
TRANSIENT_NAMES = frozenset({
    "SoftTimeLimitExceeded", "TimeLimitExceeded", "WorkerLostError",
    "ConnectionError", "TimeoutError", "BusyLoadingError", "OperationalError",
})  # fmt: skip
_INFRASTRUCTURE = (redis.ConnectionError, redis.TimeoutError, OperationalError)


class Fate(StrEnum):
    """What happens to a bead after one failure."""

    RETRY = "retry"  # try the same host again after delay_s, within this attempt
    FALLBACK = "fallback"  # run the prompt on the cloud fallback now
    REQUEUE = "requeue"  # this attempt failed: back to ``open`` for a new attempt
    BLOCK = "block"  # retrying cannot help, or max_attempts failed: ``blocked`` with the reason


@dataclass(frozen=True)
class Failure:
    """A failure as data: the error's class name, its message, and what kind of failure it is."""

    error: str
    message: str
    transient: bool
    circuit_open: bool = False

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        """The failure an exception raised in process stands for."""
        name = type(exc).__name__
        transient = (
            isinstance(exc, (errors.TransientError, *_INFRASTRUCTURE)) or name in TRANSIENT_NAMES
        )
        return cls(name, str(exc), transient, isinstance(exc, errors.CircuitOpen))

    @classmethod
    def stored(cls, result: dict[str, Any]) -> Failure:
        """The failure a Celery result backend stored (``exc_type`` / ``exc_message``)."""
        name = str(result.get("exc_type", "") or "Error")
        message = result.get("exc_message", "")
        if isinstance(message, list | tuple):
            message = " ".join(str(part) for part in message)
        error_class = getattr(errors, name, None)
        transient = name in TRANSIENT_NAMES or (
            isinstance(error_class, type) and issubclass(error_class, errors.TransientError)
        )
        return cls(name, str(message), transient, name == errors.CircuitOpen.__name__)

    @property
    def text(self) -> str:
        return f"{self.error}: {self.message}".strip().rstrip(":")


@dataclass(frozen=True)
class Verdict:
    """A :class:`Fate` with its reason, and for ``RETRY`` the seconds to wait first."""

    fate: Fate
    reason: str
    delay_s: float = 0.0


def backoff_s(try_no: int, retry: RetrySettings) -> float:
    """Seconds to wait after failed try ``try_no`` (0-based): backoff_s * 2**try_no, capped."""
    return float(min(retry.backoff_s * 2**try_no, retry.backoff_max_s))


def fate(
    failure: Failure,
    *,
    try_no: int | None,
    failed_attempts: int,
    retry: RetrySettings,
    can_fall_back: bool = False,
) -> Verdict:
    """What ``failure`` means for the bead; see the module's table.

    ``try_no`` is the 0-based try on the host within this attempt, or None when the attempt is
    over (reconcile judging a stored failure); ``failed_attempts`` counts earlier attempts of the
    bead that failed; ``can_fall_back`` says the cloud fallback is on and this try was not on it.
    """
    if not failure.transient:
        return Verdict(Fate.BLOCK, failure.text)
    tries_left = try_no is not None and try_no < retry.max_retries
    if can_fall_back and (failure.circuit_open or not tries_left):
        return Verdict(Fate.FALLBACK, failure.text)
    if tries_left:
        assert try_no is not None
        delay = retry.breaker_cooldown_s if failure.circuit_open else backoff_s(try_no, retry)
        return Verdict(Fate.RETRY, failure.text, delay_s=delay)
    attempts = failed_attempts + 1
    if attempts >= retry.max_attempts:
        return Verdict(Fate.BLOCK, f"{failure.text}; gave up after {attempts} attempts")
    return Verdict(Fate.REQUEUE, f"attempt {attempts} failed: {failure.text}")
