"""Kills of the control plane: ``kill -9`` of beat, of the control worker while it holds the
reconcile lock, and of the dispatcher in the middle of a poll.

Real Redis, real ``ygg worker`` / ``ygg beat`` / ``ygg loop`` processes, the simulator's HTTP
host. Every issue must end closed once (``audit``), each bead asked of a model once, and the
recovery time (kill → the next progress, read from Beads or the simulator's records) is logged.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from yggcelery.beads import JsonlStore
from yggcelery.celery_app import make_app
from yggcelery.connections import redis_for
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.ledger import Entry, EntryState, Ledger
from yggcelery.reconcile import RECONCILE_LOCK_S, broker_task_ids
from yggcelery.settings import Settings, TimeoutSettings, to_env
from yggcelery.sim import SimFleet
from yggcelery.tasks import BEAT_PASS_KEY
from yggcelery.testing.cluster import CONTROL, LocalCluster
from yggcelery.testing.faults import DispatcherThread, audit, records, requests_by_bead
from yggcelery.testing.redis import RedisServer
from yggcelery.testing.waiting import wait_until

log = logging.getLogger(__name__)
HOST = "skadi-code"
#: The key of ``Ledger.lock("reconcile")``.
RECONCILE_LOCK_KEY = "ygg:lock:reconcile"
#: Beat's period here: a pass every second.
EVERY_S = 1.0


def control_settings(
    make_settings: Callable[..., Settings], fleet: SimFleet, **extra: object
) -> Settings:
    settings = make_settings(
        fleet=fleet, dispatch={"poll_s": 0.2, "reconcile_every_s": EVERY_S, "status_every_s": 60},
        **extra,
    )  # fmt: skip
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    return settings


def code_issues(store: JsonlStore, services_s: list[float]) -> list[str]:
    """One code issue per simulated service time (seconds before ``time_scale``)."""
    return [
        store.create(f"code {n}", issue_type="bug", metadata={"ygg": {"service_s": s}},
                     actor="me").id
        for n, s in enumerate(services_s)
    ]  # fmt: skip


def send_all(settings: Settings, store: JsonlStore, count: int) -> None:
    """One poll of a dispatcher that then goes away: from here on only beat's reconcile job
    (on the control worker) closes the beads."""
    dispatcher = CeleryDispatcher(settings, store)
    try:
        assert dispatcher.poll() == count  # the host has room for all of them
    finally:
        dispatcher.shutdown(hand_back=False)


def closed_at(store: JsonlStore) -> dict[str, float]:
    """When each closed issue was closed (seconds since the epoch)."""
    return {
        i.id: i.closed_at.timestamp()
        for i in store.list_issues()
        if i.status == "closed" and i.closed_at is not None
    }


def ygg_process(
    settings: Settings, args: list[str], log_path: Path, **env: str
) -> subprocess.Popen[bytes]:
    """``ygg ARGS`` as a child in its own process group (so ``kill -9`` takes all of it)."""
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "yggcelery", *args],
            env={**to_env(settings), "PATH": "/usr/bin:/bin", **env},
            stdout=out, stderr=subprocess.STDOUT, cwd=log_path.parent, start_new_session=True,
        )  # fmt: skip


def kill_9(proc: subprocess.Popen[bytes]) -> float:
    """SIGKILL ``proc``'s whole process group; returns when it was killed."""
    killed_at = time.time()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return killed_at


def assert_all_closed_once(store: JsonlStore, fleet: SimFleet, ids: list[str]) -> None:
    report = audit(store)
    assert report.ok, report.problems
    assert report.statuses == {"closed": len(ids)}
    asked = requests_by_bead(fleet, status=None)
    assert set(asked) == set(ids) and set(asked.values()) == {1}, asked


# --- beat -----------------------------------------------------------------------------------


def test_kill_9_of_beat_mid_run_then_a_restart_closes_everything_once(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    tmp_path: Path,
) -> None:
    """With no dispatcher running, beat's job is what closes beads. kill -9 of beat mid-run:
    a bead answered after its last job expired stays open until beat is restarted on the same
    schedule file; then every issue is closed once and no bead was asked twice."""
    fleet = sim_fleet(time_scale=0.05)
    settings = control_settings(make_settings, fleet)
    store = JsonlStore(settings.beads.jsonl_path)
    ids = code_issues(store, [40, 80, 120, 160])  # 2, 4, 6, 8 s on 2 slots
    local_cluster(settings, hosts=[HOST])  # the host and the control worker; beat is ours
    client = redis_for(settings)
    send_all(settings, store, len(ids))
    beat_args = ["beat", "--schedule-file", str(tmp_path / "beat-schedule")]
    beat = ygg_process(settings, beat_args, tmp_path / "beat.log")

    wait_until(lambda: closed_at(store), timeout_s=60, what="beat's job closed a first bead")
    killed_at = kill_9(beat)
    # Jobs sent before the kill expire after EVERY_S: an answer later than that waits for beat.
    late = wait_until(lambda: answered_after(fleet, killed_at + 2 * EVERY_S), timeout_s=60,
                      what="a model answer after beat's last job expired")  # fmt: skip
    restarted_at = time.time()
    beat = ygg_process(settings, beat_args, tmp_path / "beat.log")
    try:
        wait_until(lambda: len(closed_at(store)) == len(ids), timeout_s=60, what="all closed")
    finally:
        kill_9(beat)

    closes = closed_at(store)
    assert all(closes[bead] > restarted_at for bead in late), (late, closes, restarted_at)
    first_pass = float(client.get(BEAT_PASS_KEY) or 0)
    assert first_pass > restarted_at  # the restarted beat's jobs ran
    assert_all_closed_once(store, fleet, ids)
    next_close = min(t for t in closes.values() if t > killed_at)
    log.warning("beat kill -9: restart → closes resume %.1fs; kill → next close %.1fs "
                "(down %.1fs)", next_close - restarted_at, next_close - killed_at,
                restarted_at - killed_at)  # fmt: skip


def answered_after(fleet: SimFleet, moment: float) -> list[str]:
    """Beads whose model answer came after ``moment``."""
    return [r["bead"] for r in records(fleet) if r["status"] == 200 and r["finished"] > moment]


# --- the control worker, holding the reconcile lock ----------------------------------------


def test_kill_9_of_the_control_worker_holding_the_reconcile_lock(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """kill -9 of the control worker in the middle of a reconcile pass, while it holds the
    lock: no pass closes anything until the dead pass's lock expires (RECONCILE_LOCK_S); then
    the dispatcher's inline passes and the restarted control worker close every issue once.

    To catch the pass holding the lock, the test holds the Beads file's lock (as another
    writer of the file would): the next pass takes the reconcile lock, then waits for the file.
    No dispatcher runs before the kill, so the lock's holder can only be the control worker.
    """
    fleet = sim_fleet(time_scale=0.05)
    settings = control_settings(make_settings, fleet)
    store = JsonlStore(settings.beads.jsonl_path)
    ids = code_issues(store, [40, 80, 120, 160])
    cluster = local_cluster(settings, hosts=[HOST], beat=True)
    client = redis_for(settings)
    send_all(settings, store, len(ids))
    wait_until(lambda: closed_at(store), timeout_s=60, what="beat's job closed a first bead")

    with FileLock(str(store.path) + ".lock", timeout=30):
        wait_until(lambda: client.exists(RECONCILE_LOCK_KEY), timeout_s=30,
                   what="a pass holding the lock, waiting for the Beads file")  # fmt: skip
        killed_at = time.time()
        cluster.kill_worker(CONTROL)
    held_s = client.pttl(RECONCILE_LOCK_KEY) / 1000
    assert held_s > 0, "the dead pass's lock should outlive it"
    cluster.start_worker(CONTROL)
    with DispatcherThread(CeleryDispatcher(settings, store)) as loop:
        freed_at = wait_until(lambda: not client.exists(RECONCILE_LOCK_KEY) and time.time(),
                              timeout_s=RECONCILE_LOCK_S + 10, what="the lock expired")  # fmt: skip
        assert loop.wait(timeout_s=60), "dispatcher did not finish"
        assert loop.error is None, loop.error

    closes = [t for t in closed_at(store).values() if t > killed_at]
    assert closes and min(closes) > freed_at - 1.0, "a pass ran while the dead pass held the lock"
    assert_all_closed_once(store, fleet, ids)
    log.warning("control worker kill -9 holding the lock (%.1fs left): kill → next close %.1fs",
                held_s, min(closes) - killed_at)  # fmt: skip


# --- the dispatcher, mid-poll ---------------------------------------------------------------


class StallingLink:
    """A TCP path to a local port that can hang: after :meth:`stall`, what clients send is
    read but no longer passed on (the path drops packets mid-command); :meth:`cut` closes every
    connection, and what was held never arrives. Replies still flow until the cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._passing = threading.Event()
        self._passing.set()
        self._cut = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="stalling-link", daemon=True).start()

    def __repr__(self) -> str:
        state = "cut" if self._cut.is_set() else "passing" if self._passing.is_set() else "stalled"
        return f"<StallingLink :{self.port} → :{self.target_port} {state}>"

    def _accept(self) -> None:
        while not self._cut.is_set():
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                return
            self._sockets += [client, upstream]
            for src, dst, held in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(src, dst, held), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, held: bool) -> None:
        try:
            while data := src.recv(65536):
                if held:
                    self._passing.wait()
                if self._cut.is_set():
                    return
                dst.sendall(data)
        except OSError:
            return

    def stall(self) -> None:
        self._passing.clear()

    def cut(self) -> None:
        self._cut.set()
        self._passing.set()
        for sock in [self._listener, *self._sockets]:
            sock.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own for the broker (the result backend stays on the shared one)."""
    with RedisServer() as server:
        yield server


def unsent(settings: Settings, store: JsonlStore, *, since: float) -> list[Entry]:
    """Attempts recorded as sent after ``since``, their beads in_progress in Beads, whose
    message is not in the broker: a publish that has not arrived."""
    held = {i.id for i in store.list_issues() if i.status == "in_progress"}
    in_broker = broker_task_ids(make_app(settings), settings) or set()
    return [
        e
        for e in Ledger.from_settings(settings).entries()
        if e.state is EntryState.SENT and e.since > since and e.bead in held
        and e.task_id not in in_broker
    ]  # fmt: skip


def test_kill_9_of_the_dispatcher_mid_poll_loses_and_repeats_nothing(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    broker: RedisServer,
    tmp_path: Path,
) -> None:
    """kill -9 of `ygg loop` in the middle of a poll: it has claimed beads in Beads and
    recorded them sent, and its publish hangs on the way to the broker (its path to Redis
    stalls; the workers' path is fine). The message never arrives. At the production timeouts
    (lost_after_s 1,500 s), a new `ygg loop` hands those beads back once their attempt is
    `unsent_s` (30 s) old, since a Redis broker can say the message is nowhere, and sends them
    again: every issue closed once, every bead asked once."""
    fleet = sim_fleet(time_scale=0.05)
    production = TimeoutSettings()
    settings = control_settings(
        make_settings, fleet, broker_url=broker.url(0),
        timeouts={**production.model_dump(), "connect_s": 1, "read_s": 30},
    )  # fmt: skip
    assert settings.timeouts.lost_after_s == 1500 and settings.timeouts.unsent_s == 30
    store = JsonlStore(settings.beads.jsonl_path)
    ids = code_issues(store, [40.0] * 8)  # 2 s each; 2 running and 2 queued at a time
    local_cluster(settings, hosts=[HOST])
    link = StallingLink(broker.port)
    first = ygg_process(settings, ["loop"], tmp_path / "loop1.log",
                        YGG_BROKER_URL=f"redis://127.0.0.1:{link.port}/0")  # fmt: skip
    try:
        wait_until(lambda: requests_by_bead(fleet), timeout_s=60, what="a first answer")
        stalled_at = time.time()
        link.stall()
        hung = wait_until(lambda: unsent(settings, store, since=stalled_at), timeout_s=30,
                          what="beads claimed and sent, their publish hanging")  # fmt: skip
    finally:
        killed_at = kill_9(first)
        link.cut()
    assert unsent(settings, store, since=stalled_at) == hung  # it never arrived

    second = ygg_process(settings, ["loop", "--until-idle"], tmp_path / "loop2.log")
    assert second.wait(timeout=180) == 0, (tmp_path / "loop2.log").read_text()[-3000:]

    assert_all_closed_once(store, fleet, ids)
    back = [min(r["arrived"] for r in records(fleet) if r["bead"] == e.bead) for e in hung]
    log.warning("dispatcher kill -9 mid-poll: %d bead(s) claimed, never sent; kill → asked "
                "again %s s (unsent_s %.0f, lost_after_s %.0f)", len(hung),
                [round(t - killed_at, 1) for t in back], settings.timeouts.unsent_s,
                settings.timeouts.lost_after_s)  # fmt: skip
    assert all(t > killed_at for t in back)
