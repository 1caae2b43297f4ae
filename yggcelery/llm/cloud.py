"""The cloud fallback: an OpenAI-compatible endpoint that takes work when a host is down.

It is paid per token, so every answer's cost is added to a :class:`SpendLedger` (one total per
UTC day; :class:`RedisSpendLedger` shares it between all workers), and no request goes out once
the day's total reaches ``daily_budget_usd``: :class:`CloudBudgetExceeded` (transient) is raised
and one WARNING line says so. Two workers checking at the same moment may both go, so the
budget can be overshot by at most one answer per worker.

The API key is read from the environment variable *named* in the settings, at call time; it
travels only in the ``Authorization`` header and never appears in logs, results or errors.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import redis

from yggcelery.errors import CloudBudgetExceeded, ConfigError
from yggcelery.llm.client import AsyncLLMClient, LLMClient
from yggcelery.llm.types import Completion, TaskTags
from yggcelery.settings import CloudSettings, HostSettings, redact_url

log = logging.getLogger(__name__)

#: The host name cloud answers carry (``Completion.host``) and their errors name.
CLOUD_HOST = "cloud"
#: Characters per token, to estimate the cost of an answer whose server reports no usage.
CHARS_PER_TOKEN = 4
_SPEND_TTL_S = 2 * 24 * 3600


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class SpendLedger(Protocol):
    """Today's cloud spend in US dollars (UTC days)."""

    def spent_today(self) -> float: ...

    def add(self, usd: float) -> float:
        """Add ``usd`` to today's total and return the new total."""
        ...


class MemorySpendLedger:
    """Spend kept in this process (tests, a single dispatcher)."""

    def __init__(self, *, today: Callable[[], dt.date] = utc_today) -> None:
        self.today = today
        self._spent: dict[dt.date, float] = {}
        self._lock = threading.Lock()

    def spent_today(self) -> float:
        with self._lock:
            return self._spent.get(self.today(), 0.0)

    def add(self, usd: float) -> float:
        with self._lock:
            day = self.today()
            self._spent[day] = self._spent.get(day, 0.0) + usd
            return self._spent[day]

    def __repr__(self) -> str:
        return f"<MemorySpendLedger today=${self.spent_today():.4f}>"


class RedisSpendLedger:
    """Spend in Redis, one key per UTC day (``<prefix>2026-11-28``), kept for two days."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "ygg:cloud:spend:",
        today: Callable[[], dt.date] = utc_today,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.today = today

    def key(self) -> str:
        return self.prefix + self.today().isoformat()

    def spent_today(self) -> float:
        value = self.client.get(self.key())
        return 0.0 if value is None else float(value)

    def add(self, usd: float) -> float:
        key = self.key()
        pipe = self.client.pipeline()
        pipe.incrbyfloat(key, usd)
        pipe.expire(key, _SPEND_TTL_S)
        total, _ = pipe.execute()
        return float(total)

    def __repr__(self) -> str:
        return f"<RedisSpendLedger prefix={self.prefix!r}>"


class CloudFallback:
    """Runs a prompt on the cloud endpoint within the daily budget, and records what it cost.

    ``client`` serves :meth:`complete`, ``async_client`` serves :meth:`acomplete`; pass the
    one(s) the caller uses (the process's shared clients, so the cloud adds no connection pool).
    """

    def __init__(
        self,
        cloud: CloudSettings,
        *,
        ledger: SpendLedger,
        client: LLMClient | None = None,
        async_client: AsyncLLMClient | None = None,
    ) -> None:
        self.cloud = cloud
        self.ledger = ledger
        self.client = client
        self.async_client = async_client
        if cloud.enabled and not os.environ.get(cloud.api_key_env):
            log.warning(
                "cloud fallback: $%s is not set, requests go without a key", cloud.api_key_env
            )

    @property
    def enabled(self) -> bool:
        return self.cloud.enabled

    @property
    def host(self) -> HostSettings:
        """The cloud endpoint as a host of the OpenAI dialect."""
        if self.cloud.url is None:
            raise ConfigError("cloud fallback is not configured (cloud.url is unset)")
        return HostSettings(
            base_url=self.cloud.url,
            dialect="openai",
            model=self.cloud.model,
            slots=1,
            kinds=(CLOUD_HOST,),
            api_key_env=self.cloud.api_key_env,
        )

    def reserve(self, tags: TaskTags | None = None) -> None:
        """Raise :class:`CloudBudgetExceeded` (and log why) if today's budget is spent."""
        spent = self.ledger.spent_today()
        budget = self.cloud.daily_budget_usd
        if spent >= budget:
            label = (tags or TaskTags()).label
            log.warning(
                "cloud fallback skipped for %s: daily budget $%.2f spent ($%.2f today)",
                label,
                budget,
                spent,
            )
            raise CloudBudgetExceeded(
                f"cloud fallback for {label}: daily budget ${budget:.2f} spent (${spent:.2f} today)"
            )

    def charge(
        self, completion: Completion, prompt: str, tags: TaskTags | None = None
    ) -> Completion:
        """``completion`` marked as a cloud answer, its cost added to the ledger."""
        tokens = completion.total_tokens or (len(prompt) + len(completion.text)) // CHARS_PER_TOKEN
        cost = tokens / 1000 * self.cloud.price_per_1k_tokens_usd
        total = self.ledger.add(cost)
        log.info(
            "cloud fallback for %s: %s tokens, $%.4f ($%.2f today)",
            (tags or TaskTags()).label,
            tokens,
            cost,
            total,
        )
        return replace(completion, host=CLOUD_HOST, via_cloud=True, cost_usd=cost)

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tags: TaskTags | None = None,
    ) -> Completion:
        """The cloud's answer; raises CloudBudgetExceeded, or a HostError naming ``cloud``."""
        if self.client is None:
            raise ConfigError("CloudFallback.complete needs a sync client (client=...)")
        self.reserve(tags)
        completion = self.client.complete(
            CLOUD_HOST,
            prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            tags=tags,
            host=self.host,
        )
        return self.charge(completion, prompt, tags)

    async def acomplete(
        self,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tags: TaskTags | None = None,
    ) -> Completion:
        """The cloud's answer through ``async_client``; see :meth:`complete`."""
        if self.async_client is None:
            raise ConfigError("CloudFallback.acomplete needs an async client (async_client=...)")
        self.reserve(tags)
        completion = await self.async_client.complete(
            CLOUD_HOST,
            prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            tags=tags,
            host=self.host,
        )
        return self.charge(completion, prompt, tags)

    def __repr__(self) -> str:
        url = redact_url(self.cloud.url) if self.cloud.url else None
        return (
            f"<CloudFallback url={url} model={self.cloud.model}"
            f" budget=${self.cloud.daily_budget_usd:.2f}/day>"
        )
