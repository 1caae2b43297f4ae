"""Worker liveness: each worker's main process beats into Redis; a silent worker is dead.

Why our own key and not Celery's worker heartbeat events: reconcile is a short pass, not an event
consumer, and needs one answer per worker now ("is it alive, and which attempts does it run"),
which one ``MGET`` of ``ygg:heartbeat:<hostname>`` gives. Celery's events would need a receiver
running beside every reconciler and say nothing about which tasks a worker holds.

:class:`HeartbeatStep` is a worker bootstep: a thread in the worker's *main* process writes
``{"at", "boot", "tasks"}`` every ``timeouts.heartbeat_s`` with a TTL of
``timeouts.worker_dead_s``. A pool process busy for minutes on a model call does not stop it, so a
worker that is only busy is never declared dead; a worker killed, OOM-killed or cut off stops
beating and its key expires. :func:`is_dead` is the pure rule reconcile applies to a started
attempt.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import bootsteps
from celery.worker import state

from yggcelery.sentinel import from_url
from yggcelery.settings import Settings

log = logging.getLogger(__name__)

KEY = "ygg:heartbeat:{hostname}"


@dataclass(frozen=True)
class Beat:
    """One heartbeat: when it was sent, when the worker started, the tasks it holds, and for
    those running, the pool process that runs each."""

    at: float
    boot: float
    tasks: frozenset[str]
    pids: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"at": self.at, "boot": self.boot, "tasks": sorted(self.tasks), "pids": self.pids}
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Beat:
        data = json.loads(raw)
        pids = {str(k): int(v) for k, v in (data.get("pids") or {}).items()}
        return cls(float(data["at"]), float(data["boot"]), frozenset(data.get("tasks", ())), pids)


def beat_client(settings: Settings) -> redis.Redis:
    """A client with short timeouts: a beat that cannot be written is skipped, not waited for."""
    wait_s = min(settings.timeouts.heartbeat_s, 2.0)
    return from_url(
        settings.result_backend,
        master=settings.sentinel_master,
        socket_timeout=wait_s,
        socket_connect_timeout=wait_s,
    )


def read_beats(client: redis.Redis, hostnames: list[str]) -> dict[str, Beat | None]:
    """The latest beat of each worker (None: none within ``worker_dead_s``). One round trip."""
    if not hostnames:
        return {}
    raw = client.mget([KEY.format(hostname=h) for h in hostnames])
    return {h: Beat.from_json(v) if v else None for h, v in zip(hostnames, raw, strict=True)}


def worker_of(meta: dict[str, Any] | None) -> str | None:
    """The worker a STARTED result names (``result_extended`` stores it)."""
    if not meta:
        return None
    worker = meta.get("worker")
    if not worker and isinstance(meta.get("result"), dict):
        worker = meta["result"].get("hostname")
    return str(worker) if worker else None


def fresh_beat(client: redis.Redis, hostname: str, *, after: float, wait_s: float) -> Beat | None:
    """The first beat of ``hostname`` sent after ``after``, waiting up to ``wait_s`` for it;
    None when the worker is silent (or gone)."""
    deadline = time.monotonic() + wait_s
    while True:
        beat = read_beats(client, [hostname]).get(hostname)
        if beat is not None and beat.at > after:
            return beat
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def is_dead(task_id: str, started_at: float, beat: Beat | None, *, heartbeat_s: float) -> bool:
    """Whether the worker that started ``task_id`` at ``started_at`` no longer runs it (pure).

    No beat within ``worker_dead_s``: the worker is gone. A beat sent well after the start
    (one period later) that does not list the task: the worker no longer holds it, e.g. it was
    restarted under the same name and the old one is gone with the task. A beat from before the
    start says nothing about the task (a worker that just took it has not beaten yet).
    """
    if beat is None:
        return True
    return beat.at > started_at + heartbeat_s and task_id not in beat.tasks


class Heartbeat:
    """Writes the beats of one worker; :meth:`run` is the beating thread's body."""

    def __init__(self, settings: Settings, hostname: str) -> None:
        self.settings = settings
        self.key = KEY.format(hostname=hostname)
        self.client = beat_client(settings)
        self.boot = time.time()
        self.stopped = threading.Event()

    def __repr__(self) -> str:
        return f"<Heartbeat {self.key} every {self.settings.timeouts.heartbeat_s}s>"

    def beat(self) -> None:
        tasks, pids = _held_tasks()
        ttl_ms = int(self.settings.timeouts.worker_dead_s * 1000)
        beat = Beat(time.time(), self.boot, frozenset(tasks), pids)
        try:
            self.client.set(self.key, beat.to_json(), px=ttl_ms)
        except redis.RedisError as exc:  # Redis away: the next beat tries again
            log.debug("heartbeat not written: %r", exc)

    def run(self) -> None:
        while not self.stopped.is_set():
            self.beat()
            self.stopped.wait(self.settings.timeouts.heartbeat_s)

    def stop(self) -> None:
        """Stop beating (tests); the key then lapses after ``worker_dead_s``."""
        self.stopped.set()


def _held_tasks() -> tuple[set[str], dict[str, int]]:
    """Ids of the tasks this worker runs or holds reserved, and the pool process running each
    running one (Celery's own bookkeeping)."""
    for _ in range(3):  # the sets change under us as tasks start and end; try again
        try:
            active = list(state.active_requests)
            reserved = list(state.reserved_requests)
        except RuntimeError:
            continue
        pids = {r.id: int(r.worker_pid) for r in active if r.worker_pid}
        return {r.id for r in (*active, *reserved)}, pids
    return set(), {}


class HeartbeatStep(bootsteps.StartStopStep):
    """The worker bootstep that runs :class:`Heartbeat` in a thread of the main process."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.heartbeat: Heartbeat | None = None
        self.thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        settings = getattr(worker.app, "ygg", None)
        if not isinstance(settings, Settings):
            return
        self.heartbeat = Heartbeat(settings, worker.hostname)
        self.thread = threading.Thread(target=self.heartbeat.run, name="ygg-heartbeat", daemon=True)
        self.thread.start()

    def stop(self, worker: Any) -> None:
        """Nothing: a worker stopping warmly still runs its tasks to the end, so it beats on
        until its process exits (the thread is a daemon); then the key lapses by itself."""
