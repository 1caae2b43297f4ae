"""The Celery tasks: thin adapters that decode arguments and call plain functions.

- ``yggcelery.run_bead``, on a host's worker: the delivery check (a stale message is skipped, a
  task that killed its worker ``max_deliveries`` times ends ``blocked``), then
  :func:`yggcelery.work.perform.perform`, the work path every dispatcher shares. Its running
  marker (:meth:`Ledger.started`) stays until Celery has stored the outcome (``task_postrun``):
  a task with neither marker nor outcome is one the dispatcher counts as queued.
- ``yggcelery.reconcile``, beat's job on the control worker:
  :func:`yggcelery.reconcile.run_once`, and the durations of what it closed into the metrics.

A pool process builds its :class:`WorkerProcess` (model client, breaker, cloud budget, ledger)
once, when it starts, for the app its worker serves: the first bead after a start does not pay
for it on a waiting GPU slot.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, Task, states
from celery.exceptions import Ignore
from celery.signals import task_postrun, worker_init, worker_process_init

from yggcelery.beads import open_store
from yggcelery.cancel import AttemptCancelled, is_cancelled, watch_cancel
from yggcelery.capacity.live import host_of_worker
from yggcelery.connections import redis_for
from yggcelery.errors import TaskCrashed
from yggcelery.exporter.durations import observe_results
from yggcelery.heartbeat import fresh_beat
from yggcelery.ledger import Ledger
from yggcelery.outcomes import BeadResult
from yggcelery.reconcile import run_once
from yggcelery.settings import Settings
from yggcelery.work.order import WorkOrder
from yggcelery.work.perform import aperform
from yggcelery.work.resources import AsyncResources, worker_resources

log = logging.getLogger(__name__)

#: When beat's reconcile job last ran (seconds since the epoch), for ``ygg doctor``.
BEAT_PASS_KEY = "ygg:reconcile:beat_at"
#: Set on a run_bead call's request once it has written its running marker.
MARKED = "ygg_running_marker"


@dataclass(frozen=True)
class WorkerProcess:
    """A worker process's long-lived helpers, built once per process and settings: its event
    loop, and on it the model client, the breaker and the cloud budget; the ledger."""

    loop: asyncio.AbstractEventLoop
    resources: AsyncResources
    ledger: Ledger

    @classmethod
    def build(cls, settings: Settings) -> WorkerProcess:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # the async client binds to it
        return cls(loop, worker_resources(settings), Ledger(redis_for(settings)))

    def perform(self, order: WorkOrder) -> BeadResult:
        """The work path for ``order``, given up (:class:`AttemptCancelled`) as soon as its
        attempt is flagged cancelled (:mod:`yggcelery.cancel`)."""
        cancelled = lambda: is_cancelled(self.ledger.client, order.task_id)  # noqa: E731
        return self.loop.run_until_complete(
            watch_cancel(aperform(order, self.resources), cancelled)
        )

    def warm_up(self, app: Celery, host: str | None = None) -> None:
        """Connect to the ledger and the result backend now, and to ``host``'s model server
        (one cheap GET): the first task of a fresh pool process then starts as fast as the
        next (without this it paid 25-130 ms of lazy imports and connects). A Redis or a
        server that is down now is the first task's problem, not the pool's."""
        with suppress(redis.RedisError):
            self.ledger.client.ping()
            backend: Any = app.backend  # Redis, as the ledger (the stubs know no client)
            backend.client.ping()
        if host is not None and host in self.resources.settings.hosts:
            server = self.resources.settings.hosts[host]
            self.loop.run_until_complete(self.resources.client.warm(server))


_processes: dict[int, WorkerProcess] = {}
#: The app of the worker this process belongs to (set in the worker's main process, inherited
#: by the pool processes it forks).
_served: list[Celery] = []
#: The host that worker serves (None: the control or cloud worker), for the warm-up.
_served_host: list[str | None] = [None]


def process_for(settings: Settings) -> WorkerProcess:
    """This process's :class:`WorkerProcess` for ``settings`` (built on first use)."""
    found = _processes.get(id(settings))
    if found is None:
        found = _processes[id(settings)] = WorkerProcess.build(settings)
    return found


@worker_init.connect
def _remember_app(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    if app is not None and isinstance(getattr(app, "ygg", None), Settings):
        _served[:] = [app]
        queues = list(app.amqp.queues.consume_from or ())
        hostname = str(getattr(sender, "hostname", "") or "")
        _served_host[0] = host_of_worker(hostname, queues, settings_of(app))


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    for app in _served:
        process_for(settings_of(app)).warm_up(app, _served_host[0])


def settings_of(app: Celery) -> Settings:
    """The ygg settings of an app :func:`~yggcelery.celery_app.make_app` built."""
    settings = getattr(app, "ygg", None)
    if not isinstance(settings, Settings):
        raise TypeError(f"{app!r} was not made by yggcelery.celery_app.make_app")
    return settings


def run_bead(task: Task[Any, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Run one work order on this worker's host (the ``yggcelery.run_bead`` task)."""
    settings = settings_of(task.app)
    order = WorkOrder.from_dict(payload)
    process = process_for(settings)
    hostname = str(task.request.hostname or "")
    check_delivery(task, order, process.ledger, settings)
    ttl_s = settings.timeouts.task_hard_s + 60
    process.ledger.started(order.task_id, hostname, os.getpid(), ttl_s=ttl_s)
    setattr(task.request, MARKED, True)  # _clear_running_marker deletes it after the store
    try:
        return process.perform(order).to_dict()
    except AttemptCancelled:
        log.info("%s: attempt %s cancelled (the bead was changed by a person); slot freed",
                 order.bead_id, order.task_id)  # fmt: skip
        raise Ignore() from None


@task_postrun.connect
def _clear_running_marker(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    """Delete a run_bead attempt's running marker once Celery has stored its outcome.

    Celery stores the result after the task function returns, then sends ``task_postrun``.
    Deleted in the function itself, the marker was gone a moment before the result came: the
    dispatcher, polling in between (another task's result wakes it), saw an attempt with
    neither and counted it as queued, its host a whole service time busier (``skewed`` sent
    code to fenrir for 14 s while a skadi slot would free in 1). A delivery skipped before it
    ran (stale, duplicate) set no marker and deletes none: the marker may be another
    delivery's, still running.
    """
    request = getattr(sender, "request", None)
    if task_id is None or not getattr(request, MARKED, False):
        return
    with suppress(redis.RedisError):  # Redis away: the marker expires by itself
        process_for(settings_of(sender.app)).ledger.finished(task_id)


def check_delivery(
    task: Task[Any, Any], order: WorkOrder, ledger: Ledger, settings: Settings
) -> None:
    """Skip a stale or duplicate message (:class:`Ignore`); fail a task redelivered after its
    worker died ``max_deliveries`` times (:class:`TaskCrashed`, permanent: the bead is blocked)."""
    retries = int(task.request.retries or 0)
    delivery = ledger.delivered(order.bead_id, order.task_id, retries)
    if not delivery.current:
        log.info("%s: task %s is stale (revoked or superseded); skipped",
                 order.bead_id, order.task_id)  # fmt: skip
        raise Ignore()
    if delivery.deliveries > 1 and _answered_or_running(task, order, ledger, settings):
        log.info("%s: task %s already answered or running on a live worker; duplicate delivery"
                 " skipped", order.bead_id, order.task_id)  # fmt: skip
        raise Ignore()
    if delivery.deliveries > settings.retry.max_deliveries:
        raise TaskCrashed(
            f"{order.bead_id}: delivered {delivery.deliveries - 1} times and the worker died"
            " each time; not trying again"
        )


def _answered_or_running(
    task: Task[Any, Any], order: WorkOrder, ledger: Ledger, settings: Settings
) -> bool:
    """Whether an earlier delivery of this task stored its result already, or still runs.

    kombu puts a running task's message back in the queue when the broker connection drops;
    the answer on its way, or stored meanwhile, must not be asked for twice. "Still runs" means
    the pool process that started it is still listed running it in a heartbeat its worker sent
    after this delivery arrived (a pool process that died, e.g. killed by the OOM killer, is
    not: its task runs again at once).
    """
    if task.AsyncResult(order.task_id).state in states.READY_STATES:
        return True
    running = ledger.running_on(order.task_id)
    if running is None:
        return False
    hostname, pid, _ = running
    wait_s = 2 * settings.timeouts.heartbeat_s
    beat = fresh_beat(ledger.client, hostname, after=time.time(), wait_s=wait_s)
    return beat is not None and beat.pids.get(order.task_id) == pid


def reconcile(task: Task[Any, Any]) -> dict[str, int]:
    """One reconcile pass (the ``yggcelery.reconcile`` task, beat's job)."""
    settings = settings_of(task.app)
    report = run_once(settings, task.app, open_store(settings))
    client = redis_for(settings)
    observe_results(client, report.closed)
    client.set(BEAT_PASS_KEY, repr(time.time()))  # what `ygg doctor` reads: beat is alive
    return report.counts()


def register_tasks(app: Celery) -> None:
    """Register yggcelery's tasks on ``app`` (one explicit app, no shared_task)."""
    app.task(name="yggcelery.run_bead", bind=True, max_retries=0)(run_bead)
    app.task(name="yggcelery.reconcile", bind=True, ignore_result=True)(reconcile)
