"""What a worker does with one bead: the plain function behind the ``run_bead`` Celery task.

The dispatcher sends a :class:`WorkOrder` (plain JSON: workers on the GPU hosts never read Beads);
:func:`perform` builds the prompt, asks the host's model through the process's LLM client behind
the host's circuit breaker, and returns a :class:`~yggcelery.outcomes.BeadResult`. Retries and the
cloud fallback are the task's business (``tasks.py``), so this stays a function tests call directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yggcelery.breaker import CircuitBreaker, RedisBreakerState
from yggcelery.cloud import CloudFallback, RedisSpendLedger
from yggcelery.errors import CircuitOpen, TransientError
from yggcelery.ledger import Ledger, redis_for
from yggcelery.llm import Completion, LLMClient, TaskTags, get_client
from yggcelery.outcomes import BeadResult
from yggcelery.prompt import bead_fields, build_prompt
from yggcelery.routing import beads_priority, task_id
from yggcelery.settings import Settings

if TYPE_CHECKING:
    from yggcelery.beads import Issue

log = logging.getLogger(__name__)


def service_s_of(issue: Issue) -> float | None:
    """A simulated service time asked for in ``metadata.ygg.service_s`` (benchmark scenarios)."""
    meta = issue.metadata if isinstance(issue.metadata, dict) else {}
    ygg = meta.get("ygg")
    value = ygg.get("service_s") if isinstance(ygg, dict) else None
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class WorkOrder:
    """One dispatch attempt of one bead, as sent in the Celery message."""

    bead: dict[str, Any]
    kind: str
    host: str
    priority: int
    attempt: int
    task_id: str
    #: Simulated service time asked of the simulator (benchmark scenarios); None for real work.
    service_s: float | None = None

    @classmethod
    def for_issue(cls, issue: Issue, *, kind: str, host: str, attempt: int = 1) -> WorkOrder:
        """Attempt ``attempt`` of ``issue`` on ``host`` (a host name or the cloud queue)."""
        return cls(
            bead=bead_fields(issue),
            kind=kind,
            host=host,
            priority=beads_priority(issue),
            attempt=attempt,
            task_id=task_id(issue.id, attempt),
            service_s=service_s_of(issue),
        )

    @property
    def bead_id(self) -> str:
        return str(self.bead["id"])

    def to_dict(self) -> dict[str, Any]:
        """The message's JSON argument (shallow: the bead's fields are already plain JSON)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def summary(self) -> str:
        """How the task's argument reads in Flower and worker logs (not the whole bead)."""
        title = str(self.bead.get("title", ""))
        title = title if len(title) <= 60 else title[:57] + "..."
        return f"[{self.bead_id} p{self.priority} {self.kind} attempt {self.attempt}: {title!r}]"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkOrder:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def tags(self) -> TaskTags:
        return TaskTags(
            bead=self.bead_id, priority=self.priority, kind=self.kind, service_s=self.service_s
        )


@dataclass(frozen=True)
class WorkerContext:
    """A worker process's long-lived helpers: one HTTP client, the shared breaker and budget."""

    settings: Settings
    client: LLMClient
    breaker: CircuitBreaker
    fallback: CloudFallback
    ledger: Ledger


_contexts: dict[int, WorkerContext] = {}


def worker_context(settings: Settings) -> WorkerContext:
    """The process's :class:`WorkerContext` (built on first use, after the pool forks)."""
    ctx = _contexts.get(id(settings))
    if ctx is None:
        ctx = _contexts[id(settings)] = _build_context(settings)
    return ctx


def _build_context(settings: Settings) -> WorkerContext:
    client = get_client(settings)
    redis = redis_for(settings)
    breaker = CircuitBreaker(
        RedisBreakerState(redis),
        failures=settings.retry.breaker_failures,
        cooldown_s=settings.retry.breaker_cooldown_s,
        trust_clean_s=1.0,  # one round trip less per bead; another worker's opening seen ≤1 s late
    )
    fallback = CloudFallback(settings.cloud, ledger=RedisSpendLedger(redis), client=client)
    return WorkerContext(settings, client, breaker, fallback, Ledger(redis))


def perform(order: WorkOrder, ctx: WorkerContext) -> BeadResult:
    """Run ``order`` on its host; transient failures are recorded by the breaker and re-raised."""
    host = ctx.settings.host(order.host)
    prompt = build_prompt(order.bead, kind=order.kind, max_chars=host.max_prompt_chars)
    if not ctx.breaker.allow(order.host):
        raise CircuitOpen(order.host, "circuit open after repeated failures")
    try:
        completion = ctx.client.complete(order.host, prompt.text, tags=order.tags())
    except TransientError:
        ctx.breaker.record_failure(order.host)
        raise
    ctx.breaker.record_success(order.host)
    return result_of(order, completion, truncated=prompt.truncated)


def perform_on_cloud(order: WorkOrder, ctx: WorkerContext) -> BeadResult:
    """Run ``order`` on the cloud fallback (raises CloudBudgetExceeded when the budget is spent)."""
    host = ctx.settings.hosts.get(order.host)
    max_chars = host.max_prompt_chars if host else ctx.settings.cloud.max_prompt_chars
    prompt = build_prompt(order.bead, kind=order.kind, max_chars=max_chars)
    completion = ctx.fallback.complete(prompt.text, tags=order.tags())
    log.info("%s ran on the cloud fallback ($%.4f)", order.bead_id, completion.cost_usd)
    return result_of(order, completion, truncated=prompt.truncated)


def result_of(order: WorkOrder, completion: Completion, *, truncated: bool) -> BeadResult:
    """The outcome of ``order`` to write into Beads (every dispatcher's, Celery's included)."""
    return BeadResult(
        bead=order.bead_id,
        task_id=order.task_id,
        kind=order.kind,
        host=completion.host,
        model=completion.model,
        text=completion.text,
        prompt_tokens=completion.prompt_tokens or 0,
        completion_tokens=completion.completion_tokens or 0,
        total_s=completion.total_s,
        via_cloud=completion.via_cloud,
        cost_usd=completion.cost_usd,
        prompt_truncated=truncated,
    )
