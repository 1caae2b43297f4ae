"""The retry policy of one prompt on one host, with the circuit breaker and the cloud fallback.

Try the host up to ``max_retries + 1`` times, waiting :func:`backoff_s` between tries, while its
breaker allows; a permanent error is raised at once. When the tries are used up (host down,
or busy past its retries) or the breaker is open, the cloud fallback runs the prompt if it is
enabled and within budget; otherwise, or if the cloud fails too, the host's last transient error
is raised, so the task stays transient.

The decisions live in :class:`RetryPlan`; :func:`complete_with_fallback` (threads, tests) and
:func:`acomplete_with_fallback` (the asyncio dispatcher) are the two small loops around it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from yggcelery.breaker import CircuitBreaker, CircuitState
from yggcelery.errors import (
    CircuitOpen,
    CloudBudgetExceeded,
    HostRejected,
    TransientError,
    YggError,
)
from yggcelery.llm.types import Completion, TaskTags
from yggcelery.settings import RetrySettings

if TYPE_CHECKING:
    from yggcelery.cloud import CloudFallback
    from yggcelery.llm.client import AsyncLLMClient, LLMClient

log = logging.getLogger(__name__)


def backoff_s(attempt: int, retry: RetrySettings) -> float:
    """Seconds to wait after failed try ``attempt`` (0-based): backoff_s * 2**attempt, capped."""
    return float(min(retry.backoff_s * 2**attempt, retry.backoff_max_s))


class RetryPlan:
    """The decisions for one prompt on one host; the loops only send and sleep."""

    def __init__(
        self,
        host_name: str,
        *,
        retry: RetrySettings,
        breaker: CircuitBreaker | None = None,
        tags: TaskTags | None = None,
    ) -> None:
        self.host_name = host_name
        self.retry = retry
        self.breaker = breaker
        self.label = (tags or TaskTags()).label
        self.last_error: TransientError | None = None

    def attempts(self) -> range:
        return range(self.retry.max_retries + 1)

    def may_try(self) -> bool:
        """Whether the breaker lets this try go; if not, remember CircuitOpen as the error."""
        if self.breaker is None:
            return True
        try:
            self.breaker.check(self.host_name)
        except CircuitOpen as exc:
            self.last_error = exc
            return False
        return True

    def answered(self, error: YggError | None = None) -> None:
        """The host answered (a completion, or a rejection of the request): it is alive."""
        if self.breaker is not None and (error is None or isinstance(error, HostRejected)):
            self.breaker.record_success(self.host_name)

    def failed(self, error: TransientError, attempt: int) -> float | None:
        """Record a transient failure; the seconds to wait before the next try, or None to stop."""
        self.last_error = error
        if self.breaker is not None:
            self.breaker.record_failure(self.host_name)
        if attempt >= self.retry.max_retries or self._breaker_open():
            log.info(
                "%s on %s: giving up after %s tries: %s",
                self.label,
                self.host_name,
                attempt + 1,
                error,
            )
            return None
        delay = backoff_s(attempt, self.retry)
        log.info(
            "%s on %s: try %s failed, again in %.1fs: %s",
            self.label,
            self.host_name,
            attempt + 1,
            delay,
            error,
        )
        return delay

    def _breaker_open(self) -> bool:
        return self.breaker is not None and self.breaker.state(self.host_name) is CircuitState.OPEN

    def give_up(self) -> TransientError:
        """The error to raise when the host is out of tries and the cloud does not step in."""
        assert self.last_error is not None, "give_up() before any try"
        return self.last_error

    def use_cloud(self, fallback: CloudFallback | None) -> bool:
        if fallback is None or not fallback.enabled:
            return False
        log.info("%s: host %s unavailable, trying the cloud fallback", self.label, self.host_name)
        return True

    def cloud_failed(self, error: YggError) -> TransientError:
        """The host's error to raise (the task stays transient) after the cloud failed too."""
        if not isinstance(error, CloudBudgetExceeded):  # that one is logged where it is raised
            log.warning("%s: cloud fallback failed: %s", self.label, error)
        return self.give_up()


def complete_with_fallback(
    client: LLMClient,
    fallback: CloudFallback | None,
    host_name: str,
    prompt: str,
    *,
    retry: RetrySettings,
    breaker: CircuitBreaker | None = None,
    tags: TaskTags | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Completion:
    """The answer from ``host_name``, else from the cloud; see the module docstring."""
    plan = RetryPlan(host_name, retry=retry, breaker=breaker, tags=tags)
    for attempt in plan.attempts():
        if not plan.may_try():
            break
        try:
            completion = client.complete(
                host_name, prompt, max_tokens=max_tokens, temperature=temperature, tags=tags
            )
        except TransientError as exc:
            delay = plan.failed(exc, attempt)
            if delay is None:
                break
            sleep(delay)
        except YggError as exc:
            plan.answered(exc)
            raise
        else:
            plan.answered()
            return completion
    if not plan.use_cloud(fallback):
        raise plan.give_up()
    assert fallback is not None
    try:
        return fallback.complete(prompt, max_tokens=max_tokens, temperature=temperature, tags=tags)
    except YggError as exc:
        raise plan.cloud_failed(exc) from exc


async def acomplete_with_fallback(
    client: AsyncLLMClient,
    fallback: CloudFallback | None,
    host_name: str,
    prompt: str,
    *,
    retry: RetrySettings,
    breaker: CircuitBreaker | None = None,
    tags: TaskTags | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Completion:
    """The asyncio twin of :func:`complete_with_fallback` (breaker calls stay blocking)."""
    plan = RetryPlan(host_name, retry=retry, breaker=breaker, tags=tags)
    for attempt in plan.attempts():
        if not plan.may_try():
            break
        try:
            completion = await client.complete(
                host_name, prompt, max_tokens=max_tokens, temperature=temperature, tags=tags
            )
        except TransientError as exc:
            delay = plan.failed(exc, attempt)
            if delay is None:
                break
            await sleep(delay)
        except YggError as exc:
            plan.answered(exc)
            raise
        else:
            plan.answered()
            return completion
    if not plan.use_cloud(fallback):
        raise plan.give_up()
    assert fallback is not None
    try:
        return await fallback.acomplete(
            prompt, max_tokens=max_tokens, temperature=temperature, tags=tags
        )
    except YggError as exc:
        raise plan.cloud_failed(exc) from exc
