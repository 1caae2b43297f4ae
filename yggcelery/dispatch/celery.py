"""The Celery dispatcher (``ygg loop``): ready beads → per-host queues at their Beads priority.

Each poll reconciles finished work into Beads (each measured duration moves the shared estimate
of its (host, kind), :mod:`yggcelery.estimates`), then walks ready issues most urgent first, aging
included, and sends each to the host where it is expected to finish first, overflow hosts
included (:mod:`yggcelery.scheduling`, through :mod:`yggcelery.dispatch.plan`); an aged bead is
sent, and recorded in the ledger, at its aged priority. Only a bounded number of tasks
per host sit in the broker (``inflight_per_slot`` × slots); the backlog stays in Beads, so a new p0
is never behind a long broker queue and routing always uses fresh information.

Between polls the loop naps ``poll_s``, or less: a task storing its result wakes it
(:mod:`yggcelery.dispatch.wakeup`).

Sending one bead is: claim the bead's next attempt in the ledger (a compare-and-set, atomic
across dispatchers), claim the issue in Beads, record the attempt as sent, publish with a
deterministic task id. A stop between those steps leaves a ledger entry that reconcile hands
back, so nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from celery import Celery, states

from yggcelery.capacity.live import effective_slots_by_host, read_capacity
from yggcelery.celery_app import make_app
from yggcelery.dispatch.base import OUTAGES, Dispatcher, HostStatus
from yggcelery.dispatch.plan import InFlight, Planner
from yggcelery.dispatch.wakeup import ResultWakeup
from yggcelery.errors import ClaimConflict
from yggcelery.estimates import Estimates, RedisEstimates
from yggcelery.ledger import Entry, EntryState, Ledger
from yggcelery.llm.health import HostHealth
from yggcelery.outcomes import hand_back
from yggcelery.priority import PRIORITIES
from yggcelery.queues import queued_by_priority
from yggcelery.reconcile import Reconciler, ReconcileReport, broker_task_ids, result_metas
from yggcelery.routing import (
    CLOUD_QUEUE,
    beads_priority,
    broker_priority,
    candidate_hosts,
)
from yggcelery.routing import room as room_for
from yggcelery.scheduling import effective_priority
from yggcelery.settings import Settings
from yggcelery.status import host_status
from yggcelery.work.order import WorkOrder

if TYPE_CHECKING:
    from yggcelery.beads import BeadsStore, Issue

log = logging.getLogger(__name__)

_ACTIVE = (EntryState.CLAIMED, EntryState.SENT)


class CeleryDispatcher(Dispatcher):
    """Dispatches to the Celery cluster; outcomes come back through :class:`Reconciler`."""

    name = "celery"

    def __init__(
        self,
        settings: Settings,
        store: BeadsStore,
        *,
        app: Celery | None = None,
        ledger: Ledger | None = None,
        health: HostHealth | None = None,
        after_reconcile: Callable[[ReconcileReport], None] | None = None,
        estimates: Estimates | None = None,
        resend_aged: bool = True,
    ) -> None:
        super().__init__(settings, store)
        self.app = app or make_app(settings)
        self.ledger = ledger or Ledger.from_settings(settings)
        self.health = health or HostHealth(settings)
        self.reconciler = Reconciler(settings, self.app, store, self.ledger)
        self.wakeup = ResultWakeup.for_app(self.app, settings)
        #: Called with each inline reconcile pass's report (``ygg loop`` records durations).
        self.after_reconcile = after_reconcile
        #: Expected service seconds per (host, kind), shared in Redis and fed by reconcile.
        self.estimates = estimates or RedisEstimates.from_settings(settings)
        #: Hand back tasks still in the broker once aging makes them more urgent (resent at
        #: the new priority as a new attempt by the same poll).
        self.resend_aged = resend_aged
        self._prepared = False

    def prepare(self) -> None:
        """Connect the producer (its queues declared), the broker reads, the result backend and
        the ledger now, probe the hosts and read Beads once (best effort: what is down now, the
        poll loop retries)."""
        if self._prepared:
            return
        try:
            with self.app.producer_or_acquire() as producer:
                producer.connection.ensure_connection(max_retries=1)
                for queue in self.app.amqp.queues.values():
                    producer.maybe_declare(queue)
            queued_by_priority(self.app, self.settings, list(self.settings.hosts))  # pooled reads
            self.health.down_hosts()  # probes each host once; cached for a few seconds
            backend: Any = self.app.backend  # Redis: its client (the stubs know no client)
            backend.client.ping()
            self.ledger.client.ping()
            self.store.ready(sort=self.settings.beads.sort)
            self.wakeup.start()
        except OUTAGES as exc:
            log.warning("celery dispatcher: could not prepare (the first poll will retry): %r", exc)
            return
        self._prepared = True

    def loads(self, entries: list[Entry] | None = None) -> dict[str, list[int]]:
        """Beads priorities of the tasks each host (and the cloud queue) has in flight."""
        hosts = [*self.settings.hosts, *([CLOUD_QUEUE] if self.settings.cloud.enabled else [])]
        loads: dict[str, list[int]] = {host: [] for host in hosts}
        for entry in self.ledger.entries() if entries is None else entries:
            if entry.state in _ACTIVE and entry.host in loads:
                loads[entry.host].append(entry.priority)
        return loads

    def room(
        self,
        priority: int = PRIORITIES[-1],
        loads: dict[str, list[int]] | None = None,
        slots: dict[str, int] | None = None,
    ) -> dict[str, int]:
        """How many more tasks of ``priority`` each host may take now (:func:`routing.room`),
        filling only the effective ``slots`` (read now when not given)."""
        loads = self.loads() if loads is None else loads
        slots = self.effective_slots() if slots is None else slots
        return room_for(loads, priority=priority, settings=self.settings, slots=slots)

    def effective_slots(self) -> dict[str, int]:
        """Slots to fill per host now: what each host's worker last read from its server
        (:mod:`yggcelery.capacity.live`), the configured slots where no fresh reading is."""
        live = read_capacity(self.ledger.client, list(self.settings.hosts))
        return effective_slots_by_host(self.settings, live)

    def flights(self, entries: Iterable[Entry]) -> list[InFlight]:
        """The active ``entries`` for the planner, what runs told apart from what waits by the
        workers' running markers, so a task queued long ago is not taken for one about to
        finish (:meth:`unanswered`)."""
        return _flights(*self.unanswered(entries))

    def unanswered(
        self, entries: Iterable[Entry]
    ) -> tuple[list[Entry], dict[str, tuple[str, int, float]]]:
        """(the active ``entries`` whose task has not answered yet, the running markers of
        their tasks): one read of the markers, one of the results of the tasks without one."""
        active = [e for e in entries if e.state in _ACTIVE]
        sent = [e.task_id for e in active if e.state is EntryState.SENT]
        running = self.ledger.running_of(sent)
        answered = self.answered([t for t in sent if t not in running])
        return [e for e in active if e.task_id not in answered], running

    def answered(self, task_ids: list[str]) -> set[str]:
        """Those of ``task_ids`` with a stored outcome (one read of the result backend).

        A task that ends after the poll's reconcile pass read the results has no running
        marker any more, but its ledger entry stays active until the next pass: taken for a
        queued task it would count as a whole service time still to come on its host, and
        send the next bead to a slower overflow host while this one's slot is free.
        """
        metas = result_metas(self.app, task_ids)
        return {t for t, meta in metas.items() if meta.get("status") in states.READY_STATES}

    def in_flight(self) -> int:
        return sum(1 for e in self.ledger.entries() if e.state in _ACTIVE)

    def poll(self) -> int:
        """Reconcile, claim what fits (one Beads write for all claims), then publish it."""
        report = self.reconciler.run_once()
        for result in report.closed:
            if not result.via_cloud:
                self.estimates.observe(result.host, result.kind, result.total_s)
        if self.after_reconcile is not None:
            self.after_reconcile(report)
        if self.resend_aged:
            self.hand_back_aged()
        with self.store.batch():
            claimed = self.claim_ready()
        self.publish(claimed)
        return len(claimed)

    def claim_ready(self) -> list[tuple[Entry, WorkOrder]]:
        """Claim ready issues, most urgent first (aging included), each to the host where it
        is expected to finish first, as long as some host has room for it."""
        entries = {entry.bead: entry for entry in self.ledger.entries()}
        active, running = self.unanswered(entries.values())
        loads = self.loads(active)
        slots = self.effective_slots()
        by_priority = self.settings.beads.sort == "priority"
        down: set[str] | None = None
        ready = self.store.ready(sort=self.settings.beads.sort)
        now, times = time.time(), self.estimates.table()
        planner = Planner.build(
            self.settings, flights=_flights(active, running), ready=ready, times=times, now=now
        )
        claimed = []
        for issue, priority in planner.order:
            room = self.room(priority, loads, slots)
            if all(r <= 0 for r in room.values()):
                if by_priority:  # everything after this is as urgent or less: no room either
                    break
                continue
            down = self.health.down_hosts() if down is None else down
            host, kind = self.route(issue, planner=planner, priority=priority, room=room, down=down)
            if host is None:
                continue
            entry = self.claim(
                issue, host=host, kind=kind, priority=priority, previous=entries.get(issue.id)
            )
            if entry is not None:
                loads[host].append(priority)
                planner.sent(issue, host=host, kind=kind, priority=priority)
                order = WorkOrder.for_issue(issue, kind=kind, host=host, attempt=entry.attempt)
                claimed.append((entry, order))
        return claimed

    def route(
        self,
        issue: Issue,
        *,
        room: dict[str, int],
        down: set[str],
        planner: Planner | None = None,
        priority: int | None = None,
    ) -> tuple[str | None, str]:
        """(host or cloud queue, kind) for ``issue``; host None when it must wait.

        The host where it is expected to finish first (:func:`scheduling.choose_host`); the
        cloud queue only when every host serving its kind is down. Without ``planner`` (one
        poll's snapshot) it reads the ledger and the estimates itself.
        """
        if planner is None:
            planner = Planner.build(
                self.settings,
                flights=self.flights(self.ledger.entries()),
                ready=[],
                times=self.estimates.table(),
            )
        priority = int(beads_priority(issue)) if priority is None else priority
        choice, kind = planner.choose(issue, priority=priority, room=room, down=down)
        if choice is not None:
            return choice.host, kind
        all_down = all(c in down for c in candidate_hosts(kind, self.settings))
        if all_down and room.get(CLOUD_QUEUE, 0) > 0:
            return CLOUD_QUEUE, kind
        return None, kind

    def claim(
        self,
        issue: Issue,
        *,
        host: str,
        kind: str,
        priority: int | None = None,
        previous: Entry | None = None,
    ) -> Entry | None:
        """Claim ``issue`` for ``host`` in the ledger and in Beads; None if someone else has it.

        ``previous`` is the bead's ledger entry as read at the start of this poll. It may be
        stale: the ledger's claim is a compare-and-set on it, so a rival that claimed the bead
        meanwhile makes this claim fail rather than send the bead twice. The ledger entry
        (state ``claimed``) comes first, so a dispatcher that dies before :meth:`publish`
        leaves a trace that reconcile hands back after a grace period. ``priority`` is the one
        it is sent at (aged; by default its Beads priority).
        """
        if previous is not None and previous.state in _ACTIVE:
            # Another dispatcher sent it since our `ready` read (same actor, so Beads' claim
            # would not object): a second attempt now would run the issue twice.
            return None
        claimed = Entry(
            bead=issue.id,
            attempt=0,  # the ledger numbers the attempt
            task_id="",
            host=host,
            kind=kind,
            priority=beads_priority(issue) if priority is None else priority,
            state=EntryState.CLAIMED,
            since=time.time(),
            failures=previous.failures if previous else 0,
        )
        entry = self.ledger.claim(claimed, seen=previous)
        if entry is None:
            return None
        try:
            self.store.claim(issue.id, actor=self.actor)
        except ClaimConflict as exc:
            log.info("Skipped %s: %s", issue.id, exc)
            self._restore(issue.id, previous)
            return None
        return entry

    def publish(self, claimed: list[tuple[Entry, WorkOrder]]) -> None:
        """Record the attempts as sent, then publish them on one producer (a worker checks the
        ledger before it starts, so the record must come first).

        A publish that fails (the broker went away; on RabbitMQ, a message it did not confirm)
        hands that bead and the ones after it back at once rather than leaving them recorded
        as sent with no message: the ledger first, so a message that did get through is stale.
        """
        if not claimed:
            return
        self.ledger.put(*(entry.moved(EntryState.SENT) for entry, _ in claimed))
        sent = 0
        try:
            with self.app.producer_or_acquire() as producer:
                for entry, order in claimed:
                    self._send(entry, order, producer)
                    sent += 1
        except OUTAGES as exc:
            self._hand_back_unsent([entry for entry, _ in claimed[sent:]], exc)
            raise

    def _send(self, entry: Entry, order: WorkOrder, producer: Any) -> None:
        self.app.send_task(
            "yggcelery.run_bead",
            args=[order.to_dict()],
            # Celery would saferepr() the whole bead for every message; a summary is what
            # Flower should show anyway, and costs nothing.
            argsrepr=order.summary(),
            kwargsrepr="{}",
            task_id=entry.task_id,
            queue=entry.host,
            routing_key=entry.host,
            priority=broker_priority(entry.priority, self.settings.broker_kind),
            producer=producer,
        )
        log.info("Dispatched %s to %s (p%d)", entry.bead, entry.host, entry.priority)

    def _hand_back_unsent(self, entries: list[Entry], exc: BaseException) -> None:
        """Give ``entries`` (recorded sent, publish failed) back to Beads; where the ledger
        cannot be written either (Redis is the broker and is down), reconcile finds them
        nowhere after ``timeouts.unsent_s`` and does it."""
        note = f"publish failed ({type(exc).__name__}); sent again at the next poll"
        try:
            self.ledger.put(*(entry.moved(EntryState.REQUEUED) for entry in entries))
        except OUTAGES:
            log.warning("%d bead(s) not published, left to reconcile: %r", len(entries), exc)
            return
        for entry in entries:
            hand_back(self.store, entry.bead, note=note, actor=self.actor)
        log.warning("%d bead(s) not published, handed back: %r", len(entries), exc)

    def _restore(self, bead: str, previous: Entry | None) -> None:
        if previous is None:
            self.ledger.forget(bead)
        else:
            self.ledger.put(previous)

    def nap(self, stop: threading.Event, seconds: float) -> None:
        """Until ``seconds`` pass, ``stop`` is set, one of our tasks stores its result or the
        Beads data changes."""
        self.wakeup.nap(stop, seconds, watch_s=self.settings.dispatch.watch_s,
                        wake=self.beads_changed)  # fmt: skip

    def get_status(self) -> dict[str, HostStatus]:
        return host_status(self.app, self.settings)

    def shutdown(self, *, hand_back: bool = True) -> None:
        """Hand back what still waits in the broker; running tasks finish and are reconciled."""
        self.wakeup.close()
        if hand_back:
            self.hand_back_queued()
        self.health.close()

    def hand_back_queued(self) -> int:
        """Revoke tasks not yet started and give their issues back to ``open`` (rollback path)."""
        waiting = self._queued_task_ids()
        count = 0
        for entry in self.ledger.entries():
            if entry.state is EntryState.CLAIMED or (
                entry.state is EntryState.SENT and entry.task_id in waiting
            ):
                self.app.control.revoke(entry.task_id)
                hand_back(self.store, entry.bead, note="dispatcher stopped", actor=self.actor)
                self.ledger.put(entry.moved(EntryState.REQUEUED))
                count += 1
        if count:
            log.info("Handed back %d queued issue(s) on shutdown", count)
        return count

    def hand_back_aged(self) -> int:
        """Revoke tasks not started that aging has made more urgent, and hand their issues
        back to Beads, so this poll sends them again at their aged priority.

        A task in the broker keeps the priority it was sent at; without this, a p3 sent early
        waits behind every p1 sent after it, however long it has waited. The attempt mechanism
        makes the old message stale (the worker checks the ledger before it starts). The aging
        clock of a sent task runs from when it was sent (the ledger keeps no ready time), so it
        is promoted at most ``aging_s`` later than it would have been in Beads. The broker is
        read only when some task is due.
        """
        aging_s, now = self.settings.scheduling.aging_s, time.time()
        due = [
            e
            for e in self.ledger.entries()
            if e.state is EntryState.SENT
            and e.host != CLOUD_QUEUE
            and effective_priority(e.priority, waited_s=now - e.since, aging_s=aging_s) < e.priority
        ]
        if not due:
            return 0
        waiting = self._queued_task_ids()
        count = 0
        for entry in (e for e in due if e.task_id in waiting):
            self.app.control.revoke(entry.task_id)
            self.ledger.put(entry.moved(EntryState.REQUEUED))
            hand_back(self.store, entry.bead, note="resent at an aged priority", actor=self.actor)
            count += 1
        if count:
            log.info("Resending %d aged task(s) still in the broker", count)
        return count

    def _queued_task_ids(self) -> set[str]:
        """Tasks in the queues proper (not delivered to a worker yet)."""
        in_broker = broker_task_ids(self.app, self.settings, include_unacked=False)
        return in_broker or set()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "room": self.room(), "in_flight": self.in_flight()}


def _flights(
    entries: Iterable[Entry], running: Mapping[str, tuple[str, int, float]]
) -> list[InFlight]:
    """The ledger's active entries as the planner sees them: running (since its start) where a
    worker's running marker says so, else queued (claimed, or in the broker; the caller leaves
    out tasks that have answered, :meth:`CeleryDispatcher.unanswered`)."""
    out = []
    for entry in entries:
        if entry.state not in _ACTIVE:
            continue
        marker = running.get(entry.task_id)
        out.append(
            InFlight(
                host=entry.host,
                kind=entry.kind,
                priority=entry.priority,
                since=marker[2] if marker else entry.since,
                running=marker is not None,
            )
        )
    return out
