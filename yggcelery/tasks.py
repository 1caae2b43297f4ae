"""The Celery tasks: thin adapters that decode arguments and call plain functions.

- ``yggcelery.run_bead`` — on a host's worker: :func:`yggcelery.work.perform`, with retries
  (exponential backoff) on transient errors, the cloud fallback after the last retry, and a cap on
  deliveries so a task that kills its worker every time ends ``blocked`` instead of looping.
- ``yggcelery.reconcile`` — beat's job, on the control worker: :func:`yggcelery.reconcile.run_once`.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Ignore
from celery.signals import worker_process_init

from yggcelery.errors import CircuitOpen, TaskCrashed, TransientError
from yggcelery.llm import backoff_s
from yggcelery.work import WorkOrder, perform, perform_on_cloud, worker_context

log = logging.getLogger(__name__)


def register_tasks(app: Celery) -> None:
    """Register yggcelery's tasks on ``app`` (one explicit app, no shared_task)."""
    from yggcelery.celery_app import CLOUD_QUEUE, settings_of

    settings = settings_of(app)

    @worker_process_init.connect(weak=False)
    def _warm_up(**_: Any) -> None:
        """Build the pool process's client, breaker and ledger, and connect to the ledger and
        the result backend, before its first task: the first bead after a start or a restart
        does not pay for them on a waiting GPU slot. A Redis that is down now is the first
        task's problem, not the pool's."""
        ctx = worker_context(settings)
        with suppress(redis.RedisError):
            ctx.ledger.client.ping()
            backend: Any = app.backend  # Redis, as the ledger (the stubs know no client)
            backend.client.ping()

    @app.task(name="yggcelery.run_bead", bind=True, max_retries=None)
    def run_bead(self: Task[Any, Any], payload: dict[str, Any]) -> dict[str, Any]:
        order = WorkOrder.from_dict(payload)
        ctx = worker_context(settings)
        retries = int(self.request.retries or 0)
        delivery = ctx.ledger.delivered(order.bead_id, order.task_id, retries)
        if not delivery.current:
            log.info(
                "%s: task %s is stale (revoked or superseded); skipped",
                order.bead_id,
                order.task_id,
            )
            raise Ignore()
        if delivery.deliveries > settings.retry.max_deliveries:
            raise TaskCrashed(
                f"{order.bead_id}: delivered {delivery.deliveries - 1} times and the worker died"
                " each time; not trying again"
            )
        if order.host == CLOUD_QUEUE:
            return perform_on_cloud(order, ctx).to_dict()
        try:
            return perform(order, ctx).to_dict()
        except TransientError as exc:
            fallback = ctx.fallback.enabled and (
                isinstance(exc, CircuitOpen) or retries >= settings.retry.max_retries
            )
            if fallback:
                return perform_on_cloud(order, ctx).to_dict()
            if retries >= settings.retry.max_retries:
                raise
            delay = settings.retry.breaker_cooldown_s if isinstance(exc, CircuitOpen) else None
            log.info(
                "%s: %s; retry %d in %.1fs",
                order.bead_id,
                exc,
                retries + 1,
                delay or backoff_s(retries, settings.retry),
            )
            raise self.retry(
                exc=exc, countdown=delay or backoff_s(retries, settings.retry)
            ) from exc

    @app.task(name="yggcelery.reconcile", ignore_result=True)
    def reconcile() -> dict[str, int]:
        from yggcelery.reconcile import run_once

        return run_once(settings, app).counts()
