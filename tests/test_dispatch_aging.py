"""Aging under Celery: a task still in the broker is resent at its aged priority."""

from __future__ import annotations

from collections.abc import Callable

from yggcelery.beads import JsonlStore
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.ledger import EntryState
from yggcelery.queues import queued_by_priority
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.waiting import wait_until


def test_a_queued_p3_is_resent_one_level_up_once_it_has_waited_aging_s(
    make_settings: Callable[..., Settings], sim_fleet: Callable[..., SimFleet]
) -> None:
    """No worker takes skadi's queue: after aging_s the p3 task is revoked, handed back and
    sent again as attempt 2 at p2, and the broker holds only the new message's priority."""
    fleet = sim_fleet(time_scale=1.0)
    settings = make_settings(fleet=fleet, scheduling={"aging_s": 0.5})
    settings.beads.dir.mkdir(parents=True)
    store = JsonlStore(settings.beads.jsonl_path)
    bead = store.create("late code", priority=3, labels=["kind:code"], actor="me").id
    dispatcher = CeleryDispatcher(settings, store)
    dispatcher.poll()
    first = dispatcher.ledger.get(bead)
    assert first is not None and (first.attempt, first.priority) == (1, 3)

    def resent() -> bool:
        dispatcher.poll()
        entry = dispatcher.ledger.get(bead)
        return entry is not None and entry.attempt > 1 and entry.state is EntryState.SENT

    wait_until(resent, timeout_s=20, what="the aged task to be resent")

    entry = dispatcher.ledger.get(bead)
    assert entry is not None and entry.priority == 2
    assert store.get(bead).status == "in_progress"
    queued = queued_by_priority(dispatcher.app, settings, ["skadi-code"])["skadi-code"]
    assert queued["p2"] == 1, queued
