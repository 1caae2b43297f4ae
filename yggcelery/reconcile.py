"""Reconcile: Celery outcomes back into Beads, exactly once; lost work found and requeued.

One pass reads the ledger, the Beads issues, the results in the backend and (on Redis) the task
ids still in the broker, then :func:`decide` — a pure function holding every transition — says
what to do with each ledger entry:

============================  ==========================================================
seen                          action
============================  ==========================================================
result SUCCESS                comment + close (reason names host and duration), forget
FAILURE, permanent error      ``blocked`` with the reason in a note, forget
FAILURE, transient error      back to ``open`` (or ``blocked`` after ``max_attempts``)
REVOKED by its worker         back to ``open`` (or ``blocked``): cancelled on a broker outage
issue closed/reopened/gone    revoke the task, forget (a person decided)
claimed, never sent           back to ``open`` after a grace period (dispatcher died)
sent, never reached Redis     no message, never started, no result after ``unsent_s``: back
                              to ``open`` (or ``blocked``): its dispatcher died mid-publish
sent, nowhere to be found     after ``lost_after_s``: back to ``open`` (or ``blocked``)
anything else                 wait
============================  ==========================================================

Every write is idempotent (:mod:`yggcelery.outcomes`), and a pass runs under a Redis lock, so
beat's job and the dispatcher's inline pass never interleave; running a pass twice on the same
state changes nothing the second time.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from celery import Celery, states

from yggcelery import queues
from yggcelery.cancel import request_cancel
from yggcelery.heartbeat import is_dead, read_beats, worker_of
from yggcelery.ledger import Entry, EntryState, Ledger
from yggcelery.outcomes import BeadResult, hand_back, record_failure, record_success
from yggcelery.routing import queue_names
from yggcelery.settings import Settings
from yggcelery.work.fate import Failure, Fate, fate

if TYPE_CHECKING:
    from yggcelery.beads import BeadsStore, Issue

log = logging.getLogger(__name__)

#: A claim never followed by a send (the dispatcher died in between) is handed back after this.
CLAIM_GRACE_S = 30.0
#: Expiry of the reconcile lock, in seconds (see :meth:`Reconciler.run_once`).
RECONCILE_LOCK_S = 20.0


class Action(StrEnum):
    """What a reconcile pass does with one ledger entry."""

    CLOSE = "close"  # write the result comment, close the issue
    BLOCK = "block"  # mark blocked with the reason
    REQUEUE = "requeue"  # hand back to open, keep the attempt count
    REVOKE = "revoke"  # a person changed the issue: revoke the task, forget the entry
    FORGET = "forget"  # nothing to write: drop the entry
    WAIT = "wait"  # still queued or running


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""


@dataclass
class ReconcileReport:
    """What one pass did, for logs, ``ygg reconcile --once`` and tests."""

    actions: Counter[str] = field(default_factory=Counter)
    skipped: bool = False
    #: The results this pass wrote into Beads (for the duration metrics and estimates).
    closed: list[BeadResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(self.actions)

    def __repr__(self) -> str:
        done = " ".join(f"{k}={v}" for k, v in sorted(self.actions.items()) if k != "wait")
        return f"<ReconcileReport {done or 'nothing'}{' skipped' if self.skipped else ''}>"


def decide(
    entry: Entry,
    issue: Issue | None,
    meta: dict[str, Any] | None,
    *,
    in_broker: bool | None,
    now: float,
    settings: Settings,
    worker_dead: bool = False,
) -> Decision:
    """The one place where a dispatch attempt's fate is decided (pure: no I/O).

    ``worker_dead``: the worker that started the attempt stopped beating
    (:func:`yggcelery.heartbeat.is_dead`).
    """
    status = _status(meta)
    if issue is None:
        return Decision(Action.REVOKE, "issue no longer in Beads")
    if entry.state is EntryState.REQUEUED:
        return Decision(Action.WAIT if issue.status == "open" else Action.FORGET)
    if entry.state is EntryState.CLAIMED:  # the dispatcher is between claim and send
        if now - entry.since > CLAIM_GRACE_S:
            return Decision(Action.REQUEUE, "claimed but never sent (dispatcher stopped)")
        return Decision(Action.WAIT)
    ours = issue.status == "in_progress" and issue.assignee == settings.beads.actor
    if status == states.SUCCESS:
        return Decision(Action.CLOSE) if ours else Decision(Action.FORGET, "changed by a person")
    if not ours:
        return Decision(Action.REVOKE, f"issue is {issue.status} (changed by a person)")
    if status == states.FAILURE:
        return _after(Failure.stored((meta or {}).get("result") or {}), entry, settings)
    if status == states.STARTED and worker_dead:
        worker = worker_of(meta) or "its worker"
        reason = f"task {entry.task_id}: {worker} stopped beating (worker lost)"
        return _after(Failure("WorkerLost", reason, transient=True), entry, settings)
    if status == states.REVOKED and in_broker is not True:
        # We revoke only after forgetting the entry, so this one was revoked by its worker:
        # Celery cancels running acks_late tasks when the broker connection drops, and with
        # Redis down the message is then acked instead of restored. Nothing will run it again.
        reason = f"task {entry.task_id} cancelled by its worker (broker connection lost)"
        return _after(Failure("WorkerLost", reason, transient=True), entry, settings)
    age_s = now - entry.since
    if in_broker is False and status == states.PENDING and age_s > settings.timeouts.unsent_s:
        reason = (f"task {entry.task_id} never reached the broker (no message, not started, "
                  f"no result {age_s:.0f}s after it was sent)")  # fmt: skip
        return _after(Failure("WorkerLost", reason, transient=True), entry, settings)
    lost = in_broker is False and status in (states.PENDING, states.STARTED)
    if (lost or in_broker is None) and age_s > settings.timeouts.lost_after_s:
        reason = f"task {entry.task_id} lost (no message, no result for {age_s:.0f}s)"
        return _after(Failure("WorkerLost", reason, transient=True), entry, settings)
    return Decision(Action.WAIT)


def _status(meta: dict[str, Any] | None) -> str:
    return str((meta or {}).get("status", states.PENDING))


def needs_broker(
    entry: Entry, meta: dict[str, Any] | None, *, now: float, settings: Settings
) -> bool:
    """Whether :func:`decide` could answer differently for ``entry`` depending on ``in_broker``.

    Only a sent attempt that its worker revoked, one not started ``unsent_s`` after it was
    sent, or one older than ``lost_after_s`` with no outcome yet, is judged by whether its
    message is still in the broker (or by the broker being unable to tell); a pass in which no
    entry is any of these skips reading the broker.
    """
    if entry.state is not EntryState.SENT:
        return False
    status = _status(meta)
    age_s = now - entry.since
    if status == states.REVOKED or (
        status == states.PENDING and age_s > settings.timeouts.unsent_s
    ):
        return True
    return status not in states.READY_STATES and age_s > settings.timeouts.lost_after_s


def _after(failure: Failure, entry: Entry, settings: Settings) -> Decision:
    """The attempt is over with ``failure``: requeue or block, as :func:`fate` says (the same
    decision the asyncio and legacy dispatchers take in process)."""
    verdict = fate(failure, try_no=None, failed_attempts=entry.failures, retry=settings.retry)
    action = Action.REQUEUE if verdict.fate is Fate.REQUEUE else Action.BLOCK
    return Decision(action, verdict.reason)


def broker_task_ids(
    app: Celery, settings: Settings, *, include_unacked: bool = True
) -> set[str] | None:
    """Ids of the cluster's tasks still in the broker; None where the broker cannot tell.

    On RabbitMQ lost work is therefore found by age alone (``timeouts.lost_after_s``).
    """
    return queues.task_ids(app, settings, queue_names(settings), include_unacked=include_unacked)


def result_metas(app: Celery, task_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Raw stored results (status, result) by task id, without rebuilding exceptions."""
    if not task_ids:
        return {}
    backend: Any = app.backend  # a key-value backend (Redis): mget and key naming
    values = backend.mget([backend.get_key_for_task(t) for t in task_ids])
    return {t: backend.decode(v) for t, v in zip(task_ids, values, strict=True) if v}


@dataclass
class _Changes:
    """What one pass does to the ledger (after its Beads writes) and to the metrics."""

    put: list[Entry] = field(default_factory=list)
    forget: list[Entry] = field(default_factory=list)
    closed: list[BeadResult] = field(default_factory=list)


class Reconciler:
    """Applies :func:`decide` to every ledger entry; shared by beat's job and the dispatcher."""

    def __init__(self, settings: Settings, app: Celery, store: BeadsStore, ledger: Ledger) -> None:
        self.settings = settings
        self.app = app
        self.store = store
        self.ledger = ledger
        self.actor = settings.beads.actor

    def run_once(self, *, now: float | None = None) -> ReconcileReport:
        report = ReconcileReport()
        # A pass takes well under a second; the lock's expiry only matters when its holder died
        # or Redis restarted mid-pass (the lock survives in the AOF), so it is short.
        with self.ledger.lock("reconcile", timeout_s=RECONCILE_LOCK_S) as acquired:
            if not acquired:
                report.skipped = True
                return report
            entries = self.ledger.entries()
            if not entries:
                return report
            sent = [e for e in entries if e.state is EntryState.SENT]
            metas = result_metas(self.app, [e.task_id for e in sent])
            now = time.time() if now is None else now
            # Most passes need no broker read: only an old or worker-revoked attempt's fate
            # depends on whether its message is still there.
            asks = any(needs_broker(e, metas.get(e.task_id), now=now, settings=self.settings)
                       for e in sent)  # fmt: skip
            in_broker = broker_task_ids(self.app, self.settings) if asks else set()
            if asks and in_broker is not None:
                self._look_again(sent, metas, in_broker)
            dead = self._dead_workers(sent, metas)
            changes = _Changes()
            with self.store.batch():  # one rewrite of the Beads file for the whole pass
                issues = {issue.id: issue for issue in self.store.list_issues()}
                for entry in entries:
                    seen = None if in_broker is None else entry.task_id in in_broker
                    meta = metas.get(entry.task_id)
                    decision = decide(entry, issues.get(entry.bead), meta, in_broker=seen,
                                      now=now, settings=self.settings,
                                      worker_dead=entry.task_id in dead)  # fmt: skip
                    self._apply(entry, decision, meta, changes)
                    report.actions[decision.action] += 1
            # Only once Beads holds the outcomes may the ledger let go of them: a pass that dies
            # before this point is simply done again (every Beads write is idempotent).
            self.ledger.update(put=changes.put, forget=changes.forget)
            report.closed = changes.closed
        if report.counts().keys() - {"wait"}:
            log.info("reconcile: %s", report)
        return report

    def _look_again(
        self, sent: list[Entry], metas: dict[str, dict[str, Any]], in_broker: set[str]
    ) -> None:
        """Read again the results and running markers of sent attempts that were pending and
        not in the broker: a task that a worker took, ran and acked between the pass's result
        read and its broker read is then seen answered (or running), not unsent."""
        unseen = [
            e.task_id
            for e in sent
            if e.task_id not in in_broker and _status(metas.get(e.task_id)) == states.PENDING
        ]
        if unseen:
            metas.update(result_metas(self.app, unseen))
            in_broker.update(self.ledger.running_of(unseen))

    def _dead_workers(self, sent: list[Entry], metas: dict[str, dict[str, Any]]) -> set[str]:
        """Task ids of started attempts whose worker no longer runs them (two MGETs, only when
        some attempt is running)."""
        started = [e.task_id for e in sent
                   if (metas.get(e.task_id) or {}).get("status") == states.STARTED]  # fmt: skip
        if not started:
            return set()
        workers = {task: worker_of(metas.get(task)) for task in started}
        beats = read_beats(self.ledger.client, sorted({w for w in workers.values() if w}))
        running = self.ledger.running_of(started)
        heartbeat_s = self.settings.timeouts.heartbeat_s
        dead = set()
        for task, worker in workers.items():
            beat = beats.get(worker) if worker else None
            if task in running:  # started_at is known: the full rule
                if is_dead(task, running[task][2], beat, heartbeat_s=heartbeat_s):
                    dead.add(task)
            elif worker and beat is None:  # just starting or just finished: only silence counts
                dead.add(task)
        return dead

    def _apply(
        self, entry: Entry, decision: Decision, meta: dict[str, Any] | None, changes: _Changes
    ) -> None:
        action = decision.action
        if action is Action.CLOSE:
            result = BeadResult.from_dict(meta["result"])  # type: ignore[index]
            if record_success(self.store, result, actor=self.actor):
                changes.closed.append(result)
        elif action is Action.BLOCK:
            record_failure(self.store, entry.bead, reason=decision.reason, actor=self.actor)
        elif action is Action.REQUEUE:
            hand_back(self.store, entry.bead, note=decision.reason, actor=self.actor)
            requeued = entry.moved(EntryState.REQUEUED)
            changes.put.append(replace(requeued, failures=entry.failures + 1))
            return
        elif action is Action.REVOKE:
            request_cancel(self.ledger.client, entry.task_id)  # the worker aborts the model call
            self.app.control.revoke(entry.task_id)
            log.info("Revoked %s for %s: %s", entry.task_id, entry.bead, decision.reason)
        elif action is Action.WAIT:
            return
        changes.forget.append(entry)


def run_once(settings: Settings, app: Celery, store: BeadsStore) -> ReconcileReport:
    """One reconcile pass on ``store`` (beat's job and ``ygg reconcile --once``)."""
    return Reconciler(settings, app, store, Ledger.from_settings(settings)).run_once()
