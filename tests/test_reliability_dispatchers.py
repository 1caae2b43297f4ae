"""Two `ygg loop` processes started by mistake on one Beads store and one broker."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from yggcelery.beads import JsonlStore
from yggcelery.settings import Settings, to_env
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import audit, requests_by_bead
from yggcelery.testing.seed import seed_issues


def start_loop(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**to_env(settings), "PATH": "/usr/bin:/bin"}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "yggcelery", "loop", "--until-idle"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent,
        )  # fmt: skip


def test_two_dispatchers_on_one_store_dispatch_each_issue_once(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    tmp_path: Path,
) -> None:
    """Two `ygg loop` processes at once: one model request per bead, one result comment each."""
    fleet = sim_fleet(time_scale=0.05)
    settings = make_settings(fleet=fleet, metrics_port=0)  # two loops: no /metrics port clash
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    issues = seed_issues(store, count=24, dependency_every=0, service_s=10.0)
    local_cluster(settings)

    loops = [start_loop(settings, tmp_path / f"loop{n}.log") for n in (1, 2)]
    for n, proc in enumerate(loops, start=1):
        assert proc.wait(timeout=240) == 0, (tmp_path / f"loop{n}.log").read_text()[-3000:]

    report = audit(store)
    assert report.ok, report.problems
    assert report.statuses == {"closed": len(issues)}
    requests = requests_by_bead(fleet, status=None)
    assert set(requests) == {i.id for i in issues}
    assert {bead: n for bead, n in requests.items() if n != 1} == {}


def test_a_dispatcher_with_a_stale_ready_list_does_not_send_an_issue_again(
    make_settings: Callable[..., Settings], sim_fleet: Callable[..., SimFleet]
) -> None:
    """Dispatcher B read `ready` before A sent the issue: B's claim is refused (no second task)."""
    from yggcelery.dispatch.celery import CeleryDispatcher
    from yggcelery.ledger import EntryState

    fleet = sim_fleet(time_scale=0.05)
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    issue = store.create("only one", issue_type="bug", actor="me")
    first, second = CeleryDispatcher(settings, store), CeleryDispatcher(settings, store)

    stale = second.store.ready(sort=settings.beads.sort)
    assert first.poll() == 1
    assert [i.id for i in stale] == [issue.id]
    assert second.claim(stale[0], host="skadi-code", kind="code") is None
    entry = first.ledger.get(issue.id)
    assert entry is not None and entry.attempt == 1 and entry.state is EntryState.SENT
    for dispatcher in (first, second):
        dispatcher.shutdown(hand_back=False)


def test_a_bead_reopened_after_it_closed_is_sent_again_as_a_new_attempt(
    make_settings: Callable[..., Settings], sim_fleet: Callable[..., SimFleet]
) -> None:
    """Closed, its ledger entry forgotten, then reopened by a person: the next poll sends it as
    attempt 2 with a new task id (attempt 1's result is still in the backend and must not
    answer it). No workers: attempt 1's result is written to the real backend by hand."""
    from celery import states

    from yggcelery.dispatch.celery import CeleryDispatcher
    from yggcelery.ledger import EntryState
    from yggcelery.outcomes import BeadResult

    fleet = sim_fleet(time_scale=0.05)
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    issue = store.create("answer me twice", issue_type="task", actor="me")
    dispatcher = CeleryDispatcher(settings, store)
    try:
        assert dispatcher.poll() == 1
        first = dispatcher.ledger.get(issue.id)
        assert first is not None and first.attempt == 1
        result = BeadResult(bead=issue.id, task_id=first.task_id, kind="code",
                            host="skadi-code", model="m", text="first answer")  # fmt: skip
        dispatcher.app.backend.store_result(first.task_id, result.to_dict(), states.SUCCESS)
        dispatcher.poll()
        assert store.get(issue.id).status == "closed"
        assert dispatcher.ledger.get(issue.id) is None

        store.reopen(issue.id, actor="me")
        assert dispatcher.poll() == 1
        second = dispatcher.ledger.get(issue.id)
        assert second is not None and second.state is EntryState.SENT
        assert (second.attempt, second.task_id) == (2, f"ygg:{issue.id}:2")
        assert store.get(issue.id).status == "in_progress"
    finally:
        dispatcher.shutdown(hand_back=False)
