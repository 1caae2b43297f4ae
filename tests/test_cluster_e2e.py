"""End to end: Beads file → `CeleryDispatcher` → Redis + `ygg worker`s → simulator → Beads."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from yggcelery.beads import JsonlStore
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.outcomes import TASK_MARKER
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.seed import seed_issues


def run_until_idle(dispatcher: CeleryDispatcher, *, timeout_s: float = 240) -> None:
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    try:
        dispatcher.run(stop=stop, until_idle=True)
    finally:
        timer.cancel()
    assert not stop.is_set(), "dispatcher did not finish in time"


def test_thirty_mixed_issues_all_close_once_with_one_result_comment(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    tmp_path: Path,
) -> None:
    """30 issues of mixed kinds/priorities: all closed, one result comment each, deps respected,
    and no host ever ran more requests at once than its slots."""
    fleet = sim_fleet(time_scale=0.02)
    settings = make_settings(fleet=fleet)
    store = JsonlStore(settings.beads.jsonl_path)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    issues = seed_issues(store, count=30, dependency_every=6)
    local_cluster(settings)

    run_until_idle(CeleryDispatcher(settings, store))

    final = {issue.id: issue for issue in store.list_issues()}
    assert Counter(i.status for i in final.values()) == {"closed": 30}
    for issue in final.values():
        results = [c for c in issue.comments if TASK_MARKER in c.text]
        assert len(results) == 1, f"{issue.id} has {len(results)} result comments"
        assert issue.close_reason and "Completed by yggcelery" in issue.close_reason

    started = {r["bead"]: r["started"] for h in fleet for r in h.records() if r["status"] == 200}
    assert len(started) == 30
    for issue in issues:
        for dep in issue.dependencies:
            blocker = final[dep.depends_on_id]
            assert blocker.closed_at is not None
            assert blocker.closed_at.timestamp() <= started[issue.id], (
                f"{issue.id} ran before its blocker"
            )

    for host in fleet:
        assert host.status()["max_concurrency"] <= settings.hosts[host.name].slots
