"""The long-lived helpers the work path uses: one model client, the breaker, the cloud fallback.

Built once per process: a Celery pool process builds :func:`worker_resources` when it starts
(``tasks.py``; async, so a cancelled attempt's HTTP call can be aborted), the legacy dispatcher
:func:`local_resources`, the asyncio dispatcher :func:`async_resources`. Workers share their
breaker and cloud budget in Redis; a dispatcher that runs the work itself keeps them in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from yggcelery.connections import redis_for
from yggcelery.llm.breaker import (
    BreakerState,
    CircuitBreaker,
    MemoryBreakerState,
    RedisBreakerState,
)
from yggcelery.llm.client import AsyncLLMClient, LLMClient, get_client
from yggcelery.llm.cloud import CloudFallback, MemorySpendLedger, RedisSpendLedger
from yggcelery.settings import Settings


@dataclass(frozen=True)
class Resources:
    """What :func:`~yggcelery.work.perform.perform` needs besides the order."""

    settings: Settings
    client: LLMClient
    breaker: CircuitBreaker
    fallback: CloudFallback


@dataclass(frozen=True)
class AsyncResources:
    """What :func:`~yggcelery.work.perform.aperform` needs besides the order."""

    settings: Settings
    client: AsyncLLMClient
    breaker: CircuitBreaker
    fallback: CloudFallback


def breaker_for(
    settings: Settings, state: BreakerState, *, trust_clean_s: float = 0.0
) -> CircuitBreaker:
    return CircuitBreaker(
        state,
        failures=settings.retry.breaker_failures,
        cooldown_s=settings.retry.breaker_cooldown_s,
        trust_clean_s=trust_clean_s,
    )


def worker_resources(settings: Settings) -> AsyncResources:
    """A Celery worker process's, on its own event loop (the model call can be cancelled):
    breaker and cloud budget shared by all workers, in Redis."""
    client = AsyncLLMClient(settings)
    redis = redis_for(settings)
    breaker = breaker_for(settings, RedisBreakerState(redis), trust_clean_s=1.0)
    fallback = CloudFallback(settings.cloud, ledger=RedisSpendLedger(redis), async_client=client)
    return AsyncResources(settings, client, breaker, fallback)


def local_resources(settings: Settings, *, client: LLMClient | None = None) -> Resources:
    """A dispatcher's that runs the work in its own threads (legacy): all in memory."""
    client = client or get_client(settings)
    fallback = CloudFallback(settings.cloud, ledger=MemorySpendLedger(), client=client)
    return Resources(settings, client, breaker_for(settings, MemoryBreakerState()), fallback)


def async_resources(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncResources:
    """The asyncio dispatcher's: one async client on its loop, the rest in memory."""
    client = AsyncLLMClient(settings, transport=transport)
    fallback = CloudFallback(settings.cloud, ledger=MemorySpendLedger(), async_client=client)
    return AsyncResources(settings, client, breaker_for(settings, MemoryBreakerState()), fallback)
