"""Reconcile: every transition of `decide`, and passes against a real Redis result backend."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from celery import states

from yggcelery.beads import Issue, JsonlStore
from yggcelery.celery_app import make_app
from yggcelery.ledger import LEDGER_KEY, Entry, EntryState, Ledger
from yggcelery.outcomes import TASK_MARKER, BeadResult
from yggcelery.reconcile import Action, Reconciler, decide, needs_broker
from yggcelery.routing import task_id
from yggcelery.settings import Settings, load_settings
from yggcelery.testing.redis import RedisServer

NOW = 1_000_000.0
SETTINGS = load_settings()


def entry(state: EntryState = EntryState.SENT, *, age_s: float = 1.0, failures: int = 0) -> Entry:
    return Entry(
        "bd-1", 1, task_id("bd-1", 1), "skadi-code", "code", 1, state, NOW - age_s, failures
    )


def issue(status: str = "in_progress", assignee: str | None = "ygg") -> Issue:
    return Issue.model_validate(
        {"id": "bd-1", "title": "t", "status": status, "assignee": assignee,
         "created_at": "2026-01-01T00:00:00Z"}
    )  # fmt: skip


def failure(exc_type: str) -> dict[str, Any]:
    return {"status": states.FAILURE, "result": {"exc_type": exc_type, "exc_message": ["boom"]}}


def act(
    e: Entry, i: Issue | None, meta: dict[str, Any] | None, *, in_broker: bool | None = True
) -> Action:
    return decide(e, i, meta, in_broker=in_broker, now=NOW, settings=SETTINGS).action


def test_success_closes_and_a_person_closing_first_wins() -> None:
    """SUCCESS on our claimed issue closes it; on an issue a person changed, it is dropped."""
    assert act(entry(), issue(), {"status": states.SUCCESS}) is Action.CLOSE
    assert act(entry(), issue("closed"), {"status": states.SUCCESS}) is Action.FORGET


def test_permanent_failure_blocks_transient_failure_requeues_until_the_cap() -> None:
    """HostRejected blocks at once; HostBusy requeues, and blocks on the last allowed attempt."""
    assert act(entry(), issue(), failure("HostRejected")) is Action.BLOCK
    assert act(entry(), issue(), failure("HostBusy")) is Action.REQUEUE
    last = entry(failures=SETTINGS.retry.max_attempts - 1)
    assert act(last, issue(), failure("HostBusy")) is Action.BLOCK
    assert act(entry(), issue(), failure("TimeLimitExceeded")) is Action.REQUEUE
    assert act(entry(), issue(), failure("TaskCrashed")) is Action.BLOCK


def test_unknown_exception_blocks_rather_than_loops() -> None:
    """A bug in a task (KeyError) is permanent: the bead is blocked with the reason."""
    assert act(entry(), issue(), failure("KeyError")) is Action.BLOCK


def test_person_closing_or_reopening_a_queued_issue_revokes_its_task() -> None:
    """Closed, reopened or reassigned by a person while queued: revoke; deleted: revoke."""
    assert act(entry(), issue("closed"), None) is Action.REVOKE
    assert act(entry(), issue("open", None), None) is Action.REVOKE
    assert act(entry(), issue("in_progress", "alice"), None) is Action.REVOKE
    assert act(entry(), None, None) is Action.REVOKE


def test_lost_task_is_requeued_only_after_the_timeout_and_only_if_nowhere() -> None:
    """No message, no result, older than lost_after_s: requeue; in the broker or young: wait."""
    old = SETTINGS.timeouts.lost_after_s + 1
    assert act(entry(age_s=old), issue(), None, in_broker=False) is Action.REQUEUE
    assert act(entry(age_s=old), issue(), None, in_broker=True) is Action.WAIT
    assert act(entry(age_s=5), issue(), None, in_broker=False) is Action.WAIT
    capped = entry(age_s=old, failures=SETTINGS.retry.max_attempts - 1)
    assert act(capped, issue(), None, in_broker=False) is Action.BLOCK


def test_an_attempt_that_never_reached_a_redis_broker_is_requeued_after_unsent_s() -> None:
    """Pending, no message queued or delivered, `unsent_s` after its send (its dispatcher died
    mid-publish): requeued, not left for `lost_after_s`. Not while it is in the broker, not
    where the broker cannot be read (RabbitMQ), and not once it has started (the heartbeat
    judges that)."""
    unsent_s = SETTINGS.timeouts.unsent_s
    assert unsent_s < SETTINGS.timeouts.lost_after_s
    late = entry(age_s=unsent_s + 1)
    decision = decide(late, issue(), None, in_broker=False, now=NOW, settings=SETTINGS)
    assert decision.action is Action.REQUEUE
    assert "never reached the broker" in decision.reason
    assert act(entry(age_s=unsent_s - 1), issue(), None, in_broker=False) is Action.WAIT
    assert act(late, issue(), None, in_broker=True) is Action.WAIT
    assert act(late, issue(), None, in_broker=None) is Action.WAIT
    assert act(late, issue(), {"status": states.STARTED}, in_broker=False) is Action.WAIT
    assert needs_broker(late, None, now=NOW, settings=SETTINGS)
    assert not needs_broker(late, {"status": states.STARTED}, now=NOW, settings=SETTINGS)


def test_claimed_but_never_sent_is_handed_back_after_the_grace() -> None:
    """A dispatcher that died between claim and send leaves work reconcile hands back."""
    assert act(entry(EntryState.CLAIMED, age_s=5), issue(), None) is Action.WAIT
    assert act(entry(EntryState.CLAIMED, age_s=120), issue(), None) is Action.REQUEUE


def test_requeued_entry_waits_while_open_and_is_forgotten_once_someone_else_has_it() -> None:
    """The attempt counter of a requeued bead lives until the bead is dispatched or closed."""
    assert act(entry(EntryState.REQUEUED), issue("open", None), None) is Action.WAIT
    assert act(entry(EntryState.REQUEUED), issue("closed"), None) is Action.FORGET


METAS = [
    None,
    {"status": states.STARTED},
    {"status": states.SUCCESS, "result": {}},
    failure("HostUnavailable"),
    failure("HostRejected"),
    {"status": states.REVOKED},
    {"status": states.RETRY},
]


def test_an_entry_that_needs_no_broker_read_is_decided_the_same_whatever_the_broker_holds() -> None:
    """A pass skips reading the broker's queues unless some entry `needs_broker`: for every
    other entry (all states, young and old, every kind of result, every issue status), in the
    broker, not in it and unknown must all lead to the same action."""
    old = SETTINGS.timeouts.lost_after_s + 1
    skipped = 0
    for state, age_s, meta, status in itertools.product(
        EntryState,
        (5.0, SETTINGS.timeouts.unsent_s + 1, old),
        METAS,
        ["open", "in_progress", "closed", "blocked", None],
    ):
        e, i = entry(state, age_s=age_s), issue(status) if status else None
        if not needs_broker(e, meta, now=NOW, settings=SETTINGS):
            skipped += 1
            assert len({act(e, i, meta, in_broker=seen) for seen in (True, False, None)}) == 1, (
                e, meta, status,
            )  # fmt: skip
    assert skipped > 0


def test_only_old_or_worker_revoked_attempts_need_a_broker_read() -> None:
    old = SETTINGS.timeouts.lost_after_s + 1
    assert needs_broker(entry(age_s=old), None, now=NOW, settings=SETTINGS)
    assert needs_broker(entry(), {"status": states.REVOKED}, now=NOW, settings=SETTINGS)
    assert not needs_broker(entry(age_s=5), None, now=NOW, settings=SETTINGS)
    assert not needs_broker(entry(age_s=old), {"status": states.SUCCESS}, now=NOW,
                            settings=SETTINGS)  # fmt: skip
    assert not needs_broker(entry(EntryState.CLAIMED, age_s=old), None, now=NOW,
                            settings=SETTINGS)  # fmt: skip


@pytest.fixture
def world(
    make_settings: Callable[..., Settings],
) -> tuple[Settings, JsonlStore, Ledger, Reconciler]:
    settings = make_settings()
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    app = make_app(settings)
    ledger = Ledger.from_settings(settings)
    return settings, store, ledger, Reconciler(settings, app, store, ledger)


def test_a_second_pass_on_the_same_state_changes_nothing(
    world: tuple[Settings, JsonlStore, Ledger, Reconciler],
) -> None:
    """SUCCESS and FAILURE written once; the file is byte-identical after a second pass."""
    settings, store, ledger, reconciler = world
    done = store.create("done", actor="me")
    broken = store.create("broken", actor="me")
    for bead in (done, broken):
        store.claim(bead.id, actor="ygg")
        ledger.put(
            Entry(
                bead.id,
                1,
                task_id(bead.id, 1),
                "skadi-code",
                "code",
                2,
                EntryState.SENT,
                time.time(),
            )
        )
    backend = reconciler.app.backend
    result = BeadResult(bead=done.id, task_id=task_id(done.id, 1), kind="code", host="skadi-code",
                        model="m", text="the answer", total_s=1.5)  # fmt: skip
    backend.store_result(task_id(done.id, 1), result.to_dict(), states.SUCCESS)
    backend.store_result(task_id(broken.id, 1), ValueError("bad input"), states.FAILURE)

    first = reconciler.run_once()
    assert first.counts() == {"close": 1, "block": 1}
    snapshot = settings.beads.jsonl_path.read_bytes()
    second = reconciler.run_once()
    assert second.counts() == {}
    assert settings.beads.jsonl_path.read_bytes() == snapshot

    closed, blocked = store.get(done.id), store.get(broken.id)
    assert closed.status == "closed" and "skadi-code" in (closed.close_reason or "")
    assert [c.text.count(TASK_MARKER) for c in closed.comments] == [1]
    assert blocked.status == "blocked" and "bad input" in (blocked.notes or "")


def test_a_pass_interrupted_after_the_comment_does_not_comment_twice(
    world: tuple[Settings, JsonlStore, Ledger, Reconciler],
) -> None:
    """If the comment landed but the close did not, the next pass only closes."""
    _, store, ledger, reconciler = world
    bead = store.create("half done", actor="me")
    store.claim(bead.id, actor="ygg")
    tid = task_id(bead.id, 1)
    result = BeadResult(
        bead=bead.id, task_id=tid, kind="text", host="fenrir-chat", model="m", text="x"
    )
    store.add_comment(bead.id, result.comment(), author="ygg")
    ledger.put(Entry(bead.id, 1, tid, "fenrir-chat", "text", 2, EntryState.SENT, time.time()))
    reconciler.app.backend.store_result(tid, result.to_dict(), states.SUCCESS)
    reconciler.run_once()
    final = store.get(bead.id)
    assert final.status == "closed"
    assert len(final.comments) == 1


def test_a_pass_leaves_alone_an_attempt_a_dispatcher_claimed_after_the_pass_read_the_ledger(
    redis_db: RedisServer,
) -> None:
    """A pass read attempt 1 (requeued); a dispatcher then claimed attempt 2: the pass's put
    and forget of attempt 1 leave attempt 2 alone (the bead is not left in_progress forever)."""
    ledger = Ledger(redis.Redis.from_url(redis_db.url(1)))
    read = entry(EntryState.REQUEUED)
    ledger.client.hset(LEDGER_KEY, read.bead, read.to_json())
    claimed = ledger.claim(entry(EntryState.CLAIMED), seen=read)
    assert claimed is not None and claimed.attempt == 2
    assert ledger.update(put=[read.moved(EntryState.REQUEUED)], forget=[read]) == 2
    assert [(e.attempt, e.state) for e in ledger.entries()] == [(2, EntryState.CLAIMED)]
    assert ledger.update(put=[], forget=[claimed]) == 0
    assert ledger.entries() == []
