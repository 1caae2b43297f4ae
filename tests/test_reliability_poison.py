"""A poison task: its worker process dies every time it runs it (here: kill -9 from outside).

It must end ``blocked`` after ``retry.max_deliveries`` deliveries, with a reason, instead of
looping; the other issues complete.
"""

from __future__ import annotations

from collections.abc import Callable

from yggcelery.beads import JsonlStore
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread, PoisonWatcher, audit, requests_by_bead
from yggcelery.testing.seed import seed_issues

HOST = "skadi-code"


def test_task_that_kills_its_worker_every_time_ends_blocked_after_max_deliveries(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """The poison bead reaches the model max_deliveries times, then is blocked with a reason;
    the 12 other issues close once each."""
    fleet = sim_fleet(time_scale=0.05)
    settings = make_settings(fleet=fleet, retry={"max_deliveries": 3, "backoff_s": 0.1})
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    others = seed_issues(store, count=12, dependency_every=0, service_s=10.0)
    poison = store.create(
        "parse the cursed file", issue_type="bug", priority=0,
        metadata={"ygg": {"service_s": 60.0}}, actor="me",
    )  # fmt: skip
    cluster = local_cluster(settings)

    with PoisonWatcher(cluster.app, fleet, host=HOST, bead=poison.id) as watcher:
        loop = DispatcherThread(CeleryDispatcher(settings, store)).start()
        assert loop.wait(timeout_s=240), "dispatcher did not finish"
    assert loop.error is None

    report = audit(store)
    assert report.ok, report.problems
    assert report.statuses == {"closed": len(others), "blocked": 1}
    reason = report.blocked[poison.id]
    assert "TaskCrashed" in reason and "worker died" in reason
    assert requests_by_bead(fleet, status=None)[poison.id] == settings.retry.max_deliveries
    assert len(watcher.kills) == settings.retry.max_deliveries
    assert all(
        n == 1 for bead, n in requests_by_bead(fleet, status=None).items() if bead != poison.id
    )
