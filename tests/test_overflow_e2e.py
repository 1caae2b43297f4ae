"""End to end: with overflow on, the Celery dispatcher sends code to fenrir while skadi is full."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from celery import states

from yggcelery.beads import JsonlStore
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.outcomes import TASK_MARKER, BeadResult
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster

TIME_SCALE = 0.02
CODE_S = 50.0  # simulated seconds of each code bead (1 s real)


def test_code_overflows_to_fenrir_while_skadi_is_full_and_closes_once(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    tmp_path: Path,
) -> None:
    """Three code beads on skadi's two slots, fenrir allowed code at 0.7: the third finishes
    sooner on fenrir (71 s) than behind skadi's two (100 s), runs there while skadi's slots are
    both busy, and every bead closes once with one result comment."""
    fleet = sim_fleet(time_scale=TIME_SCALE)
    hosts = fleet.host_overrides()
    hosts["fenrir-chat"] = hosts["fenrir-chat"].model_copy(update={"overflow": {"code": 0.7}})
    scheduling = {"expected_s": {"code": CODE_S * TIME_SCALE, "text": 6.0 * TIME_SCALE}}
    settings = make_settings(fleet=fleet, hosts=hosts, scheduling=scheduling)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    beads = [
        store.create(
            f"code bead {n}",
            priority=2,
            issue_type="task",
            labels=["kind:code"],
            metadata={"ygg": {"service_s": CODE_S}},
            actor="test",
        ).id
        for n in range(3)
    ]
    local_cluster(settings)

    _run_until_idle(CeleryDispatcher(settings, store))

    final = {issue.id: issue for issue in store.list_issues()}
    assert Counter(final[b].status for b in beads) == {"closed": 3}
    for bead in beads:
        results = [c for c in final[bead].comments if TASK_MARKER in c.text]
        assert len(results) == 1, f"{bead} has {len(results)} result comments"
    on_fenrir = _served(fleet, "fenrir-chat")
    on_skadi = _served(fleet, "skadi-code")
    assert len(on_fenrir) == 1 and len(on_skadi) == 2, (on_fenrir, on_skadi)
    runs = [*on_fenrir, *on_skadi]
    both_busy = max(r["started"] for r in runs) < min(r["finished"] for r in runs)
    assert both_busy, f"fenrir's run did not overlap skadi's two: {runs}"


def _served(fleet: SimFleet, host: str) -> list[dict[str, Any]]:
    return [r for r in fleet[host].records() if r["status"] == 200]


def _run_until_idle(dispatcher: CeleryDispatcher, *, timeout_s: float = 120) -> None:
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    try:
        dispatcher.run(stop=stop, until_idle=True)
    finally:
        timer.cancel()
    assert not stop.is_set(), "dispatcher did not finish in time"


def test_a_task_that_answered_after_reconcile_frees_its_slot_for_the_next_choice(
    make_settings: Callable[..., Settings], sim_fleet: Callable[..., SimFleet]
) -> None:
    """A skadi task that stored its result after the poll's reconcile pass (no running marker,
    ledger entry still active) is not taken for a queued one: the next code bead goes to its
    free skadi slot (10 s), not to fenrir (14.3 s) as if skadi had 10 s of work queued. No
    workers run: the test plays the worker's two writes (running marker, stored result)."""
    fleet = sim_fleet(time_scale=TIME_SCALE)
    hosts = fleet.host_overrides()
    hosts["fenrir-chat"] = hosts["fenrir-chat"].model_copy(update={"overflow": {"code": 0.7}})
    settings = make_settings(fleet=fleet, hosts=hosts, scheduling={"expected_s": {"code": 10.0}})
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)

    def code_bead(title: str) -> str:
        return store.create(title, priority=2, issue_type="task", labels=["kind:code"],
                            actor="test").id  # fmt: skip

    done, busy = code_bead("answered"), code_bead("running")
    dispatcher = CeleryDispatcher(settings, store)
    try:
        assert dispatcher.poll() == 2
        entries = {bead: dispatcher.ledger.get(bead) for bead in (done, busy)}
        assert {e.host for e in entries.values() if e is not None} == {"skadi-code"}
        finished, running = entries[done], entries[busy]
        assert finished is not None and running is not None
        dispatcher.ledger.started(running.task_id, "skadi@test", 4242, ttl_s=60)
        result = BeadResult(bead=done, task_id=finished.task_id, kind="code",
                            host="skadi-code", model="m", text="answer")  # fmt: skip
        dispatcher.app.backend.store_result(finished.task_id, result.to_dict(), states.SUCCESS)
        nxt = code_bead("next")

        flights = dispatcher.flights(dispatcher.ledger.entries())
        claimed = dispatcher.claim_ready()  # this poll's reconcile pass is over: no closing

        assert [(f.host, f.running) for f in flights] == [("skadi-code", True)]
        assert [(entry.bead, entry.host) for entry, _ in claimed] == [(nxt, "skadi-code")]
    finally:
        dispatcher.shutdown(hand_back=False)


def test_a_finished_task_keeps_its_running_marker_until_its_result_is_stored(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """A real skadi worker runs one bead; Redis's keyspace notifications (delivered in the
    order Redis ran the commands) show the worker deleting the task's running marker only
    after its result was stored. The other order leaves a moment with neither, in which a
    polling dispatcher counts the finished task as queued on skadi (a whole service time)."""
    fleet = sim_fleet(time_scale=TIME_SCALE)
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    client = redis.Redis.from_url(settings.broker_url)
    client.config_set("notify-keyspace-events", "K$g")  # string and generic commands
    events = client.pubsub()
    events.psubscribe("__keyspace@*__:ygg:running:*", "__keyspace@*__:celery-task-meta-*")
    try:
        bead = store.create("one code bead", priority=2, issue_type="task",
                            labels=["kind:code"], metadata={"ygg": {"service_s": 5.0}},
                            actor="test").id  # fmt: skip
        local_cluster(settings, hosts=["skadi-code"])
        _run_until_idle(CeleryDispatcher(settings, store))
        assert store.get(bead).status == "closed"
        seen = []
        while (message := events.get_message(timeout=1.0)) is not None:
            if message["type"] == "pmessage":
                key = message["channel"].decode().split(":", 1)[1]
                seen.append((key.split(":")[0].split("-")[0], message["data"].decode()))
    finally:
        events.close()
        client.config_set("notify-keyspace-events", "")
    order = [(key, event) for key, event in seen if event in ("set", "del")]
    assert ("ygg", "del") in order and ("celery", "set") in order, seen
    last_store = max(i for i, step in enumerate(order) if step == ("celery", "set"))
    unmarked = order.index(("ygg", "del"))
    assert last_store < unmarked, f"the marker went before the result came: {order}"
