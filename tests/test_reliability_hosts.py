"""Host failure mid-run: retries with backoff, the shared circuit breaker, the cloud fallback.

Without a fallback, work caught on the dead host ends ``blocked`` with a reason naming it; work
not yet sent waits in Beads; the host's return closes the breaker and later issues run there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from yggcelery.beads import JsonlStore
from yggcelery.connections import redis_for
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.llm.breaker import CircuitBreaker, CircuitState, RedisBreakerState
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread, audit
from yggcelery.testing.waiting import wait_until

HOST = "skadi-code"


def host_settings(
    make_settings: Callable[..., Settings], fleet: SimFleet, **extra: object
) -> Settings:
    return make_settings(
        fleet=fleet,
        retry={"max_retries": 2, "backoff_s": 0.2, "backoff_max_s": 0.5, "max_attempts": 1,
               "breaker_failures": 3, "breaker_cooldown_s": 2.0},
        **extra,
    )  # fmt: skip


def code_issues(store: JsonlStore, count: int) -> list[str]:
    meta = {"ygg": {"service_s": 20.0}}
    return [
        store.create(f"code {n}", issue_type="bug", metadata=meta, actor="me").id
        for n in range(count)
    ]


class BreakerWatch:
    """Samples a host's breaker state in the background: the sequence of distinct states seen."""

    def __init__(self, settings: Settings, host: str) -> None:
        self.breaker = CircuitBreaker(
            RedisBreakerState(redis_for(settings)),
            failures=settings.retry.breaker_failures,
            cooldown_s=settings.retry.breaker_cooldown_s,
        )
        self.host = host
        self.seen: list[CircuitState] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            state = self.breaker.state(self.host)
            if not self.seen or self.seen[-1] is not state:
                self.seen.append(state)

    def __enter__(self) -> BreakerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def started_after(fleet: SimFleet, host: str, when: float) -> int:
    return sum(1 for r in fleet[host].records() if r["status"] == 200 and r["arrived"] > when)


def test_host_down_blocks_caught_work_naming_it_and_its_return_closes_the_breaker(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """No fallback: tasks on the dead host retry, the breaker opens, the bead ends blocked naming
    the host; after up() the breaker closes and the remaining issues run on that host."""
    fleet = sim_fleet(time_scale=0.05)
    settings = host_settings(make_settings, fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    ids = code_issues(store, 12)
    local_cluster(settings, hosts=[HOST])

    with (
        BreakerWatch(settings, HOST) as watch,
        DispatcherThread(CeleryDispatcher(settings, store)) as loop,
    ):
        wait_until(lambda: len(fleet[HOST].records()) >= 3, timeout_s=60, every_s=0.2,
                   what=f"3 requests at {HOST}")  # fmt: skip
        fleet[HOST].down()
        wait_until(lambda: CircuitState.OPEN in watch.seen, timeout_s=60, every_s=0.2,
                   what=f"{HOST}'s breaker open")  # fmt: skip
        wait_until(lambda: loop.dispatcher.in_flight() == 0, timeout_s=60, every_s=0.2,
                   what="nothing in flight")  # fmt: skip
        came_back = time.time()
        fleet[HOST].up()
        assert loop.wait(timeout_s=120), "dispatcher did not finish"
    assert loop.error is None

    report = audit(store)
    assert report.ok, report.problems
    assert report.statuses["closed"] + report.statuses["blocked"] == len(ids)
    assert report.statuses["blocked"] >= 1
    assert all(HOST in reason for reason in report.blocked.values()), report.blocked
    assert started_after(fleet, HOST, came_back) >= 1  # later issues ran there again
    assert watch.seen[-1] is CircuitState.CLOSED
    opened = watch.seen.index(CircuitState.OPEN)
    assert CircuitState.CLOSED in watch.seen[opened:]


def test_host_down_with_a_cloud_fallback_closes_everything_some_via_the_cloud(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """With a cloud endpoint (the sim's OpenAI API): work caught on the dead host and work routed
    while it is down runs on the cloud; every issue closed once, none blocked."""
    fleet = sim_fleet(time_scale=0.05)
    cloud = {"url": fleet["fenrir-chat"].url, "model": fleet["fenrir-chat"].config.model}
    settings = host_settings(make_settings, fleet, cloud=cloud)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    ids = code_issues(store, 12)
    local_cluster(settings, hosts=[HOST, "cloud"])

    with (
        BreakerWatch(settings, HOST) as watch,
        DispatcherThread(CeleryDispatcher(settings, store)) as loop,
    ):
        wait_until(lambda: len(fleet[HOST].records()) >= 3, timeout_s=60, every_s=0.2,
                   what=f"3 requests at {HOST}")  # fmt: skip
        fleet[HOST].down()
        assert loop.wait(timeout_s=120), "dispatcher did not finish"
    assert loop.error is None

    report = audit(store)
    assert report.ok, report.problems
    assert report.statuses == {"closed": len(ids)}
    via_cloud = [i for i in store.list_issues() if "cloud fallback" in (i.close_reason or "")]
    assert via_cloud
    assert CircuitState.OPEN in watch.seen
