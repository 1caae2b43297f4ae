"""The legacy dispatcher against a real JSONL Beads file and the simulator (real HTTP)."""

from __future__ import annotations

from dispatch_helpers import add, records

from yggcelery.beads import JsonlStore
from yggcelery.bench.metrics import host_concurrency, served_requests, start_order
from yggcelery.dispatch.choose import make_dispatcher
from yggcelery.dispatch.legacy import LegacyDispatcher
from yggcelery.outcomes import TASK_MARKER
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet


def test_make_dispatcher_builds_the_legacy_dispatcher(
    dispatch_world: tuple[SimFleet, Settings, JsonlStore],
) -> None:
    """``make_dispatcher("legacy")`` is a LegacyDispatcher with one agent per seed kind."""
    _, settings, store = dispatch_world
    dispatcher = make_dispatcher("legacy", settings, store)
    assert isinstance(dispatcher, LegacyDispatcher)
    assert dispatcher.agents == {
        "code": "skadi-code",
        "text": "fenrir-chat",
        "reasoning": "surtr-reasoning",
    }
    dispatcher.shutdown()


def test_every_issue_is_closed_once_with_one_result_comment(
    dispatch_world: tuple[SimFleet, Settings, JsonlStore],
) -> None:
    """All issues end closed, each with exactly one result comment, one model request each."""
    fleet, settings, store = dispatch_world
    ids = [add(store, kind, p) for p, kind in enumerate(["code", "text", "reasoning"] * 2)]
    LegacyDispatcher(settings, store).run(until_idle=True)
    for issue in store.list_issues():
        assert issue.status == "closed", issue
        assert sum(TASK_MARKER in c.text for c in issue.comments) == 1
    beads = sorted(r["bead"] for r in records(fleet))
    assert beads == sorted(ids)


def test_one_task_per_kind_at_a_time_in_fifo_order(
    dispatch_world: tuple[SimFleet, Settings, JsonlStore],
) -> None:
    """Each agent runs one task at a time, in Beads' oldest-first order, whatever the
    priorities (issues created in one second are in id order there, as bd orders them)."""
    fleet, settings, store = dispatch_world
    code = [add(store, "code", p) for p in (4, 3, 0, 1)]
    text = [add(store, "text", p) for p in (2, 0, 4)]
    oldest = [issue.id for issue in store.ready(sort="oldest")]
    LegacyDispatcher(settings, store).run(until_idle=True)
    served = served_requests(records(fleet), beads={b: 0 for b in code + text})
    assert host_concurrency(served) == {"skadi-code": 1, "fenrir-chat": 1}
    order = start_order(served)
    assert [b for b in order if b in code] == [b for b in oldest if b in code]
    assert [b for b in order if b in text] == [b for b in oldest if b in text]


def test_shutdown_hands_back_running_work_it_cannot_wait_for(
    dispatch_world: tuple[SimFleet, Settings, JsonlStore],
) -> None:
    """Work still running when the drain time is up goes back to ``open``; none is lost."""
    _, settings, store = dispatch_world
    ids = [add(store, "code", 2, service_s=300.0), add(store, "text", 2, service_s=300.0)]
    queued = add(store, "code", 2)
    dispatcher = LegacyDispatcher(settings, store, drain_s=0.0)
    assert dispatcher.poll() == 2
    status = dispatcher.get_status()
    assert status["skadi-code"]["active"] == 1
    assert status["skadi-code"]["queued"]["p2"] == 1
    dispatcher.shutdown(hand_back=True)
    for bead in [*ids, queued]:
        issue = store.get(bead)
        assert issue.status == "open"
        assert issue.assignee in (None, "")
