"""The legacy dispatcher: one thread per agent type, as the seed ran it (comparison and rollback).

Faithful to the old design, limits included: a ``ThreadPoolExecutor(max_workers=3)``, one agent
per task kind (code, text, reasoning), each agent bound to the first host serving its kind and
running **one task at a time**, whatever that host's GPU slots. Each poll first writes back what
finished, then walks the ready issues oldest first (no priority); an issue whose agent is busy
waits for a later poll. It shares the Beads store, the claim, the outcome writes and the LLM
client (with its retry policy and cloud fallback) with the other dispatchers.

Orders and results are the same values the Celery path sends and returns
(:class:`~yggcelery.work.WorkOrder`, :func:`~yggcelery.work.result_of`).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

from yggcelery.beads import BeadsStore, Issue
from yggcelery.dispatch.base import Dispatcher, HostStatus
from yggcelery.errors import ClaimConflict
from yggcelery.llm.client import LLMClient
from yggcelery.outcomes import BeadResult
from yggcelery.priority import Priority
from yggcelery.routing import beads_priority, kind_of
from yggcelery.settings import Settings
from yggcelery.work.order import WorkOrder
from yggcelery.work.perform import perform
from yggcelery.work.resources import local_resources

log = logging.getLogger(__name__)

#: The old design's agents, one per task kind.
AGENT_KINDS = ("code", "text", "reasoning")


class LegacyDispatcher(Dispatcher):
    """Three agents, one task each, FIFO; see the module docstring."""

    name = "legacy"

    def __init__(
        self,
        settings: Settings,
        store: BeadsStore,
        *,
        client: LLMClient | None = None,
        drain_s: float = 30.0,
    ) -> None:
        super().__init__(settings, store)
        self.resources = local_resources(settings, client=client)
        #: Agent (task kind) → the host it sends to: the first host serving that kind.
        self.agents = {k: hosts[0] for k in AGENT_KINDS if (hosts := settings.hosts_for(k))}
        self.drain_s = drain_s
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="ygg-legacy")
        #: Agent → (its running work, the bead id).
        self._busy: dict[str, tuple[Future[BeadResult], str]] = {}
        #: Ready issues skipped in the last poll, per host and priority (for get_status).
        self._waiting: dict[str, dict[str, int]] = {}

    def nap(self, stop: threading.Event, seconds: float) -> None:
        """The old dispatcher's loop: the next poll after ``seconds`` (no Beads watch)."""
        stop.wait(seconds)

    def poll(self) -> int:
        self._collect()
        waiting: dict[str, dict[str, int]] = {h: Priority.counts() for h in self.settings.hosts}
        sent = 0
        for issue in self.store.ready(sort="oldest"):
            agent = self._agent_for(issue)
            if agent is None:
                continue
            if agent in self._busy:
                waiting[self.agents[agent]][beads_priority(issue).label] += 1
                continue
            sent += self._start(agent, issue)
        self._waiting = waiting
        return sent

    def _agent_for(self, issue: Issue) -> str | None:
        kind = kind_of(issue, self.settings)
        agent = kind if kind in self.agents else self.settings.routing.default_kind
        if agent not in self.agents:
            log.warning("%s: no agent for kind %r; left in the queue", issue.id, kind)
            return None
        return agent

    def _start(self, agent: str, issue: Issue) -> int:
        try:
            self.store.claim(issue.id, actor=self.actor)
        except ClaimConflict as exc:
            log.info("%s: %s", issue.id, exc)
            return 0
        order = WorkOrder.for_issue(
            issue, kind=kind_of(issue, self.settings), host=self.agents[agent]
        )
        self._busy[agent] = (self._pool.submit(perform, order, self.resources), issue.id)
        log.info("%s → %s agent on %s", issue.id, agent, order.host)
        return 1

    def _collect(self) -> None:
        for agent, (future, bead) in list(self._busy.items()):
            if future.done():
                del self._busy[agent]
                self.record_outcome(bead, future)

    def in_flight(self) -> int:
        return len(self._busy)

    def get_status(self) -> dict[str, HostStatus]:
        status: dict[str, HostStatus] = {}
        for name, host in self.settings.hosts.items():
            agents = [a for a, h in self.agents.items() if h == name]
            active = sum(1 for a in agents if a in self._busy)
            status[name] = HostStatus(
                slots=host.slots,
                active=active,
                available_slots=len(agents) - active,
                queued=self._waiting.get(name, Priority.counts()),
                online=True,
            )
        return status

    def shutdown(self, *, hand_back: bool = True) -> None:
        """Wait up to ``drain_s`` for running work and record it; hand back what is still out."""
        futures = [future for future, _ in self._busy.values()]
        if futures:
            log.info("waiting up to %.0fs for %d running task(s)", self.drain_s, len(futures))
            wait_futures(futures, timeout=self.drain_s)
        self._collect()
        for _, bead in self._busy.values():
            if hand_back:
                self.hand_back(bead, "dispatcher stopped before the task finished")
        self._busy.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
