"""The cluster across network namespaces: one machine each, nothing shared but a switch.

Each test builds a :class:`~yggcelery.testing.netbed.NetBed` (broker, control, surtr, fenrir,
skadi; real ``redis-server``, ``ygg worker``, ``ygg beat``, ``ygg loop`` and model servers, each
with its own settings file), breaks the network the way a real one breaks, and counts as
RELIABILITY.md does: every bead closed with one result comment (or blocked with a reason), model
calls repeated, and recovery times from the model servers' request records. Every test checks
that no namespace or process of its bed is left afterwards, also when it fails.

Marked ``distributed`` (``make test-distributed``); skipped without root, ``ip``, ``nft``, ``tc``.
Durations are recorded (``record_property``, the log), never asserted.
"""

from __future__ import annotations

import logging
import secrets
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from yggcelery.testing.faults import Audit, audit
from yggcelery.testing.netbed import NetBed, RunLock, cleanup
from yggcelery.testing.netbed_files import (
    ADDRESSES,
    METRICS_PORT,
    MODEL_PORT,
    REDIS_PORT,
    SENTINEL_MASTER,
    SENTINEL_PORT,
    BedPlan,
)
from yggcelery.testing.netns import Network, missing_requirements
from yggcelery.testing.seed import seed_issues
from yggcelery.testing.waiting import wait_until

pytestmark = pytest.mark.distributed
log = logging.getLogger(__name__)

SKADI = "skadi-code"
#: Simulated seconds per bead: 1.5-2 real seconds at the bed's time_scale of 0.1.
SERVICE_S = 15.0
CODE_SERVICE_S = 20.0


@pytest.fixture
def netbed(tmp_path: Path) -> Iterator[Callable[..., NetBed]]:
    """Factory: a started bed for a plan; afterwards it is closed and nothing of it may be left
    (checked here, so a failed test is checked too)."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    beds: list[NetBed] = []

    def make(**plan: Any) -> NetBed:
        bed = NetBed(BedPlan(workspace=tmp_path / "workspace", **plan), run_dir=tmp_path / "bed")
        beds.append(bed)
        bed.start()
        return bed

    yield make
    for bed in beds:
        bed.close()
    left = [item for bed in beds for item in bed.leftovers()]
    assert not left, f"left behind after the test: {left}"


def code_issues(bed: NetBed, count: int) -> list[str]:
    meta = {"ygg": {"service_s": CODE_SERVICE_S}}
    store = bed.store()
    return [
        store.create(f"code {n}", issue_type="bug", metadata=meta, actor="me").id
        for n in range(count)
    ]


def mixed_issues(bed: NetBed, count: int = 30) -> list[str]:
    return [i.id for i in seed_issues(bed.store(), count=count, service_s=SERVICE_S)]


def answered(rows: list[dict[str, Any]], *, since: float = 0.0) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == 200 and r["arrived"] > since]


def first_arrival_after(rows: list[dict[str, Any]], moment: float) -> float | None:
    """Seconds from ``moment`` to the first model request that arrived after it."""
    later = [r["arrived"] for r in rows if r["arrived"] > moment]
    return min(later) - moment if later else None


def hold(seconds: float) -> None:
    """Keep a fault in place for its planned length (the scenario's duration, not a wait)."""
    time.sleep(seconds)


def settle(bed: NetBed, *, timeout_s: float) -> None:
    """``ygg loop --until-idle`` ended by itself, without an error."""
    assert bed.wait_loop(timeout_s=timeout_s) == 0, bed.services["loop"].log_text()[-3000:]


def figures(
    bed: NetBed,
    report: Audit,
    record: Callable[[str, object], None],
    **extra: object,
) -> None:
    """Record the RELIABILITY.md row of this run: lost, duplicates, model calls repeated."""
    calls = Counter(str(r["bead"]) for r in answered(bed.all_records()))
    row: dict[str, object] = {
        "beads": sum(report.statuses.values()),
        "closed": report.statuses["closed"],
        "blocked": report.statuses["blocked"],
        "lost": sum(1 for p in report.problems if " ended " in p),
        "duplicates": sum(1 for n in report.result_comments.values() if n > 1),
        "repeated": sum(1 for n in calls.values() if n > 1),
        **extra,
    }
    for key, value in row.items():
        record(key, value)
    log.warning("netbed figures: %s", row)


def all_closed_once(bed: NetBed, ids: list[str]) -> Audit:
    """Every issue closed with exactly one result comment; nothing blocked, lost or doubled."""
    report = audit(bed.store())
    assert report.ok, report.problems
    assert report.statuses == {"closed": len(ids)}, (report.statuses, report.blocked)
    return report


# --- the bed itself ------------------------------------------------------------------------


def test_cleanup_removes_the_namespaces_of_a_dead_bed_and_spares_a_live_one() -> None:
    """--cleanup deletes namespaces whose run lock nobody holds (their processes killed too)
    and leaves those of a run that holds its lock."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    dead = Network(secrets.token_hex(3), {"broker": ADDRESSES["broker"]}).create()
    live = Network(secrets.token_hex(3), {"broker": ADDRESSES["broker"]}).create()
    lock = RunLock(live.run_id)
    lock.acquire()
    sleeper = subprocess.Popen(dead.namespace("broker").argv(["sleep", "300"]))
    try:
        removed = cleanup()
        assert set(removed) == {ns.name for ns in dead.all_namespaces}
        assert not dead.leftovers() and sleeper.wait(timeout=10) == -signal.SIGKILL
        assert live.leftovers() == sorted(ns.name for ns in live.all_namespaces)
    finally:
        sleeper.kill()
        lock.release()
        live.destroy()
        dead.destroy()
    assert not live.leftovers()


# --- a: the baseline -----------------------------------------------------------------------


def listening_in_root(pids: set[int]) -> list[str]:
    """Listening TCP sockets of the root namespace that belong to the bed's processes."""
    return [
        f"{c.laddr} pid {c.pid}"
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]


def reachable_on_loopback(port: int, pids: set[int]) -> bool:
    """Whether one of the bed's servers answers on 127.0.0.1:``port`` of the root namespace
    (something else of this machine listening there does not count)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    owners = {
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }
    return bool(owners & pids)


def test_thirty_issues_run_end_to_end_and_no_server_is_reachable_from_the_root_namespace(
    netbed: Callable[..., NetBed], record_property: Callable[[str, object], None]
) -> None:
    """30 mixed issues through broker, control and three GPU hosts in their own namespaces:
    all closed once; no server of the bed listens in, or answers on 127.0.0.1 of, the root
    namespace, and no machine has a route out."""
    bed = netbed()
    ids = mixed_issues(bed)
    started = time.monotonic()
    bed.start_loop()
    settle(bed, timeout_s=180)
    took = time.monotonic() - started
    report = all_closed_once(bed, ids)
    assert {str(r["bead"]) for r in answered(bed.all_records())} == set(ids)

    pids = bed.pids()
    assert not listening_in_root(pids)
    for port in (REDIS_PORT, MODEL_PORT, METRICS_PORT):
        assert not reachable_on_loopback(port, pids), f"port {port} answers on 127.0.0.1"
    for machine in bed.plan.machines:
        assert not bed.net.namespace(machine).ip("route", "show", "default").strip()
    figures(bed, report, record_property, run_s=round(took, 1))


# --- b, c: a host cut off from the broker ---------------------------------------------------


def test_a_host_whose_link_is_down_30s_resumes_by_itself_while_its_new_work_goes_to_the_cloud(
    netbed: Callable[..., NetBed], record_property: Callable[[str, object], None]
) -> None:
    """skadi's cable pulled for 30 s mid-run: code work routed meanwhile runs on the cloud
    fallback; once the link is back skadi's worker consumes again without a restart; every
    issue closed once."""
    bed = netbed(cloud=True)
    ids = code_issues(bed, 24)
    bed.start_loop()
    wait_until(lambda: len(answered(bed.records(SKADI))) >= 4, timeout_s=90,
               what="skadi answers 4 beads", every_s=0.5)  # fmt: skip
    cut = time.time()
    with bed.net.link_down("skadi"):
        wait_until(lambda: answered(bed.records("cloud"), since=cut), timeout_s=30,
                   what="new code work runs on the cloud", every_s=0.5)  # fmt: skip
        hold(30 - (time.time() - cut))
    back = time.time()
    recovery = wait_until(lambda: first_arrival_after(bed.records(SKADI), back), timeout_s=120,
                          what="skadi consumes again", every_s=0.2)  # fmt: skip
    settle(bed, timeout_s=180)
    report = all_closed_once(bed, ids)
    assert bed.services[SKADI].alive
    figures(bed, report, record_property, recovery_s=round(recovery, 1),
            via_cloud=len(answered(bed.records("cloud"))))  # fmt: skip


def test_a_worker_cut_off_from_the_broker_by_a_silent_drop_for_60s_consumes_again_after_the_heal(
    netbed: Callable[..., NetBed], record_property: Callable[[str, object], None]
) -> None:
    """Half-open: every packet between skadi and the broker dropped for 60 s (no RST, no FIN),
    then healed: skadi's worker, never restarted, takes work again; every issue closed once.
    The seconds from the heal to its next model request are recorded (goal: 15 s or less)."""
    bed = netbed()
    ids = code_issues(bed, 16)
    bed.start_loop()
    wait_until(lambda: len(answered(bed.records(SKADI))) >= 4, timeout_s=90,
               what="skadi answers 4 beads", every_s=0.5)  # fmt: skip
    worker_pid = bed.services[SKADI].proc.pid
    with bed.net.partition("skadi", "broker"):
        hold(60)
    healed = time.time()
    recovery = wait_until(lambda: first_arrival_after(bed.records(SKADI), healed),
                          timeout_s=150, what="skadi consumes again", every_s=0.2)  # fmt: skip
    settle(bed, timeout_s=180)
    report = all_closed_once(bed, ids)
    assert bed.services[SKADI].alive and bed.services[SKADI].proc.pid == worker_pid
    figures(bed, report, record_property, recovery_s=round(recovery, 1))


# --- d: a model server its own worker cannot reach ------------------------------------------


def test_a_model_server_unreachable_from_its_own_worker_sends_work_to_the_cloud_until_healed(
    netbed: Callable[..., NetBed], record_property: Callable[[str, object], None]
) -> None:
    """skadi's worker cannot reach skadi's model server for 25 s (the broker it still reaches;
    its open connection goes silent too): its tasks time out and fall back to the cloud, the
    breaker keeps new work away, and after the heal skadi answers again (new code beads arrive
    until it does); all closed once."""
    bed = netbed(cloud=True)
    ids = code_issues(bed, 20)
    bed.start_loop()
    wait_until(lambda: len(answered(bed.records(SKADI))) >= 2, timeout_s=90,
               what="skadi answers 2 beads", every_s=0.5)  # fmt: skip
    cut = time.time()
    with bed.net.block_local("skadi", MODEL_PORT):
        wait_until(lambda: answered(bed.records("cloud"), since=cut), timeout_s=25,
                   what="skadi's work runs on the cloud", every_s=0.5)  # fmt: skip
        hold(25 - (time.time() - cut))
    healed = time.time()
    later: list[str] = []

    def skadi_answers_again() -> float | None:
        """Seconds from the heal to skadi's next request; until then a code bead arrives every
        2 s (the cloud may have finished the first 20 during the outage, and an idle `ygg loop
        --until-idle` has ended: it is started again, as an operator's would keep running)."""
        found = first_arrival_after(bed.records(SKADI), healed)
        if found is None:
            later.extend(code_issues(bed, 1))
            if not bed.services["loop"].alive:
                bed.start_loop()
        return found

    recovery = wait_until(skadi_answers_again, timeout_s=120, what="skadi answers again",
                          every_s=2.0)  # fmt: skip
    settle(bed, timeout_s=180)
    report = all_closed_once(bed, ids + later)
    figures(bed, report, record_property, recovery_s=round(recovery, 1),
            via_cloud=len(answered(bed.records("cloud"))),
            arrived_after_heal=len(later))  # fmt: skip


# --- e, f: the control machine and the broker ------------------------------------------------


def reconciles(bed: NetBed) -> int:
    """Reconcile passes the control worker has run (beat sends them through the broker)."""
    text = bed.services["control"].log_text()
    return sum(
        1 for line in text.splitlines() if "yggcelery.reconcile[" in line and "succeeded" in line
    )


def test_the_dispatcher_and_beat_carry_on_after_the_broker_is_unreachable_from_control_20s(
    netbed: Callable[..., NetBed], record_property: Callable[[str, object], None]
) -> None:
    """control and the broker partitioned for 20 s mid-run: ``ygg loop`` and beat survive,
    beat's reconcile runs again and the loop dispatches the rest; every issue closed once."""
    bed = netbed()
    ids = mixed_issues(bed)
    bed.start_loop()
    wait_until(lambda: len(answered(bed.all_records())) >= 6, timeout_s=90,
               what="6 beads answered", every_s=0.5)  # fmt: skip
    with bed.net.partition("control", "broker"):
        hold(20)
    healed, passes = time.time(), reconciles(bed)
    assert bed.services["loop"].alive and bed.services["beat"].alive
    recovery = wait_until(lambda: first_arrival_after(bed.all_records(), healed),
                          timeout_s=120, what="work sent after the heal", every_s=0.2)  # fmt: skip
    wait_until(lambda: reconciles(bed) > passes + 1, timeout_s=60,
               what="beat's reconcile runs again", every_s=0.5)  # fmt: skip
    settle(bed, timeout_s=180)
    report = all_closed_once(bed, ids)
    figures(bed, report, record_property, recovery_s=round(recovery, 1))


def test_thirty_beads_run_through_a_1_mbit_link_between_control_and_broker(
    netbed: Callable[..., NetBed], record_property: Callable[[str, object], None]
) -> None:
    """The link between control and the broker squeezed to 1 Mbit/s for the whole run of 30
    mixed issues: all closed once (the run time is recorded)."""
    bed = netbed()
    ids = mixed_issues(bed)
    with bed.net.squeeze("control", "broker", rate="1mbit"):
        started = time.monotonic()
        bed.start_loop()
        settle(bed, timeout_s=240)
        took = time.monotonic() - started
    report = all_closed_once(bed, ids)
    figures(bed, report, record_property, run_s=round(took, 1))


# --- g: Sentinel failover --------------------------------------------------------------------


def sentinel_master(bed: NetBed) -> str:
    """The primary's address as the control machine's Sentinel reports it."""
    out = bed.redis_cli("control", "sentinel", "get-master-addr-by-name", SENTINEL_MASTER,
                        port=SENTINEL_PORT)  # fmt: skip
    return out.splitlines()[0] if out else ""


def sentinel_clients(bed: NetBed) -> int:
    """Connections the three Sentinels hold (kombu#1108 leaked one per reconnect)."""
    total = 0
    for machine in ("broker", "replica", "control"):
        if not bed.services[f"sentinel-{machine}"].alive:
            continue
        info = bed.redis_cli(machine, "info", "clients", port=SENTINEL_PORT)
        total += int(next(line.split(":")[1] for line in info.splitlines()
                          if line.startswith("connected_clients:")))  # fmt: skip
    return total


def test_a_killed_primary_is_replaced_by_its_replica_through_sentinel_and_nothing_is_lost(
    netbed: Callable[..., NetBed], record_property: Callable[[str, object], None]
) -> None:
    """Broker and result backend on ``sentinel://`` URLs everywhere (three Sentinels); the
    primary SIGKILLed mid-run: the replica is promoted and the run finishes, every issue closed
    once; the Sentinels' connection count stays bounded."""
    bed = netbed(sentinel=True)
    ids = mixed_issues(bed)
    assert sentinel_master(bed) == ADDRESSES["broker"]
    bed.start_loop()
    wait_until(lambda: len(answered(bed.all_records())) >= 8, timeout_s=90,
               what="8 beads answered", every_s=0.5)  # fmt: skip
    killed = time.time()
    bed.services["redis-broker"].signal(signal.SIGKILL)
    wait_until(lambda: sentinel_master(bed) == ADDRESSES["replica"], timeout_s=60,
               what="the replica promoted", every_s=0.5)  # fmt: skip
    promoted = time.time() - killed
    clients_after_failover = sentinel_clients(bed)
    recovery = wait_until(lambda: first_arrival_after(bed.all_records(), killed),
                          timeout_s=120, what="work goes on", every_s=0.2)  # fmt: skip
    settle(bed, timeout_s=240)
    report = all_closed_once(bed, ids)
    clients_at_end = sentinel_clients(bed)
    assert clients_at_end <= max(2 * clients_after_failover, 60), (
        clients_after_failover, clients_at_end)  # fmt: skip
    figures(bed, report, record_property, promoted_s=round(promoted, 1),
            recovery_s=round(recovery, 1), sentinel_clients_failover=clients_after_failover,
            sentinel_clients_end=clients_at_end)  # fmt: skip
