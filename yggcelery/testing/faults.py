"""Tools of the reliability tests and soak runs: run a dispatcher, break things, count outcomes.

Trusted queues are measured by killing things and counting; this module holds the counting:

- :func:`audit` reads a Beads store after a run: every issue closed with exactly one result
  comment, or blocked with a reason; anything else (still open, claimed, closed twice) is a
  problem;
- :func:`requests_by_bead` and :func:`recovery_times` read the simulator's request records:
  how often each bead reached a model, and how long after a kill an interrupted bead started again;
- :class:`DispatcherThread` runs a dispatcher's loop in the background until it is idle;
- :class:`PoisonWatcher` kill -9s the pool process serving one bead whenever its request reaches
  the simulator, from outside (no test hooks in production code).
"""

from __future__ import annotations

import logging
import os
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from celery import Celery

from yggcelery.outcomes import TASK_MARKER
from yggcelery.routing import bead_of_task

if TYPE_CHECKING:
    from yggcelery.beads import BeadsStore
    from yggcelery.dispatch.base import Dispatcher
    from yggcelery.sim import SimFleet

log = logging.getLogger(__name__)

#: Sim record statuses of a request that never got an answer: client gone (499), host down (None).
_INTERRUPTED = (499, None)


@dataclass
class Audit:
    """Where every issue of a store ended, and what is wrong with that."""

    statuses: Counter[str] = field(default_factory=Counter)
    #: Result comments (``ygg-task:`` footers) per closed issue.
    result_comments: dict[str, int] = field(default_factory=dict)
    #: Blocked issue id → the yggcelery reason in its notes.
    blocked: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __repr__(self) -> str:
        return f"<Audit {dict(self.statuses)} problems={len(self.problems)}>"


def audit(store: BeadsStore) -> Audit:
    """Check every issue: closed once with one result comment, or blocked with a reason."""
    report = Audit()
    for issue in store.list_issues():
        report.statuses[issue.status] += 1
        results = sum((c.text or "").count(TASK_MARKER) for c in issue.comments)
        if issue.status == "closed":
            report.result_comments[issue.id] = results
            if results != 1:
                report.problems.append(f"{issue.id}: closed with {results} result comments")
        elif issue.status == "blocked":
            reason = _ygg_reason(issue.notes or "")
            report.blocked[issue.id] = reason
            if not reason:
                report.problems.append(f"{issue.id}: blocked without a yggcelery reason")
            if results:
                report.problems.append(f"{issue.id}: blocked but has {results} result comments")
        else:
            report.problems.append(f"{issue.id}: ended {issue.status} ({issue.assignee})")
    return report


def _ygg_reason(notes: str) -> str:
    lines = [line for line in notes.splitlines() if line.startswith("yggcelery: ")]
    return lines[-1].removeprefix("yggcelery: ") if lines else ""


def records(fleet: SimFleet) -> list[dict[str, Any]]:
    """Every model request of every host of ``fleet``."""
    return [record for host in fleet for record in host.records()]


def requests_by_bead(fleet: SimFleet, *, status: int | None = 200) -> Counter[str]:
    """How many model requests per bead the hosts answered with ``status`` (None: any)."""
    return Counter(
        str(r["bead"]) for r in records(fleet) if status is None or r["status"] == status
    )


def recovery_times(fleet: SimFleet, kills: Iterable[float]) -> list[float]:
    """For each kill (``time.time()``) and each request it interrupted: seconds from the kill to
    that bead's next request reaching a host (which is when its work was running again)."""
    rows = records(fleet)
    out = []
    for killed_at in kills:
        hit = {
            r["bead"]
            for r in rows
            if r["status"] in _INTERRUPTED and r["arrived"] <= killed_at <= (r["finished"] or 1e18)
        }
        for bead in hit:
            later = [r["arrived"] for r in rows if r["bead"] == bead and r["arrived"] > killed_at]
            if later:
                out.append(min(later) - killed_at)
    return out


def summary(values: list[float]) -> str:
    """``n=5 median=10.4s max=12.0s`` (or ``n=0``)."""
    if not values:
        return "n=0"
    return f"n={len(values)} median={statistics.median(values):.1f}s max={max(values):.1f}s"


class DispatcherThread:
    """A dispatcher's ``run`` loop on a background thread (stopped on exit)."""

    def __init__(self, dispatcher: Dispatcher, *, until_idle: bool = True) -> None:
        self.dispatcher = dispatcher
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(until_idle,), name="ygg-dispatcher", daemon=True
        )

    def _run(self, until_idle: bool) -> None:
        try:
            self.dispatcher.run(stop=self.stop_event, until_idle=until_idle)
        except BaseException as exc:
            self.error = exc
            log.exception("dispatcher thread died")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> DispatcherThread:
        self._thread.start()
        return self

    def wait(self, *, timeout_s: float) -> bool:
        """Wait for the loop to end by itself (idle); False if it is still running."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(60)

    def __enter__(self) -> DispatcherThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def running_pids(app: Celery) -> dict[str, int]:
    """Task id → pid of the pool process running it, on every worker that answers."""
    active = app.control.inspect(timeout=1.0).active() or {}
    return {
        str(task["id"]): int(task["worker_pid"])
        for tasks in active.values()
        for task in tasks
        if task.get("worker_pid")
    }


class PoisonWatcher:
    """Kills (SIGKILL) the pool process running ``bead`` each time its request reaches the host.

    It watches the simulator's records for a new in-flight request of the bead, asks the workers
    which pool process runs the bead's task (``inspect().active()`` reports ``worker_pid``), and
    kills that process, as a task that crashes its interpreter would.
    """

    def __init__(self, app: Celery, fleet: SimFleet, *, host: str, bead: str) -> None:
        self.app = app
        self.fleet = fleet
        self.host = host
        self.bead = bead
        self.kills: list[float] = []
        self._seen: set[float] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ygg-poison", daemon=True)

    def __repr__(self) -> str:
        return f"<PoisonWatcher bead={self.bead} kills={len(self.kills)}>"

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            for record in self.fleet[self.host].records():
                new = record["bead"] == self.bead and record["arrived"] not in self._seen
                if new and record["status"] is None:
                    self._kill(record["arrived"])

    def _kill(self, arrived: float) -> None:
        pid = self._pool_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        self._seen.add(arrived)
        self.kills.append(time.time())
        log.info("poison: killed pool process %s running %s", pid, self.bead)

    def _pool_pid(self) -> int | None:
        for task_id, pid in running_pids(self.app).items():
            parsed = bead_of_task(task_id)
            if parsed and parsed[0] == self.bead:
                return pid
        return None

    def __enter__(self) -> PoisonWatcher:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)
