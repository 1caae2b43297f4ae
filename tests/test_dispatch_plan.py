"""One poll's scheduling snapshot: the ready list's order and where each bead goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from yggcelery.beads import Issue
from yggcelery.bench.scenarios import SEED_OVERFLOW
from yggcelery.dispatch.celery import _flights
from yggcelery.dispatch.plan import InFlight, Planner, ordered, promoted
from yggcelery.estimates import MemoryEstimates
from yggcelery.ledger import Entry, EntryState
from yggcelery.settings import Settings, load_settings

NOW = 1_000_000.0


def overflow_settings(**overrides: Any) -> Settings:
    """The seed fleet with fenrir allowed code at 0.7."""
    hosts = {name: host.model_dump() for name, host in load_settings().hosts.items()}
    hosts["fenrir-chat"]["overflow"] = {"code": 0.7}
    return load_settings(hosts=hosts, **overrides)


def bead(bead_id: str, *, kind: str = "code", priority: int = 2, age_s: float = 0.0) -> Issue:
    created = datetime.fromtimestamp(NOW, UTC) - timedelta(seconds=age_s)
    return Issue(id=bead_id, title=bead_id, priority=priority, labels=[f"kind:{kind}"],
                 created_at=created)  # fmt: skip


def planner(settings: Settings, *, flights: list[InFlight], ready: list[Issue]) -> Planner:
    times = MemoryEstimates(settings).table()
    return Planner.build(settings, flights=flights, ready=ready, times=times, now=NOW)


def test_aged_bead_goes_before_younger_beads_of_its_new_level() -> None:
    """A p3 ready for two aging periods is sent at p1, ahead of a fresh p1, behind a p0."""
    settings = load_settings(scheduling={"aging_s": 60})
    ready = [bead("p0", priority=0), bead("p1", priority=1), bead("old", priority=3, age_s=130)]
    times = MemoryEstimates(settings).table()

    order = ordered(ready, settings=settings, times=times, now=NOW)

    assert [(i.id, p) for i, p in order] == [("p0", 0), ("old", 1), ("p1", 1)]


def test_without_aging_the_ready_list_keeps_beads_order_and_priorities() -> None:
    """aging_s = 0: Beads' order, each bead at its filed priority."""
    settings = load_settings(scheduling={"aging_s": 0})
    ready = [bead("a", priority=3, age_s=1e6), bead("b", priority=1)]
    times = MemoryEstimates(settings).table()

    assert [(i.id, p) for i, p in ordered(ready, settings=settings, times=times, now=NOW)] == [
        ("a", 3),
        ("b", 1),
    ]


def test_code_overflows_to_fenrir_once_skadis_slots_are_taken_this_poll() -> None:
    """Two code beads fill skadi; the third finishes sooner on fenrir (14 s vs 20 s)."""
    settings = overflow_settings()
    ready = [bead(f"c{n}") for n in range(3)]
    plan = planner(settings, flights=[], ready=ready)
    room = {"surtr-reasoning": 4, "fenrir-chat": 6, "skadi-code": 4}
    hosts = []
    for issue in ready:
        choice, kind = plan.choose(issue, priority=2, room=room)
        assert choice is not None
        plan.sent(issue, host=choice.host, kind=kind, priority=2)
        hosts.append(choice.host)

    assert hosts == ["skadi-code", "skadi-code", "fenrir-chat"]


def test_fenrir_takes_no_code_while_its_own_text_waits() -> None:
    """A text bead still waiting in Beads keeps fenrir's slots for text: code waits for skadi."""
    settings = overflow_settings()
    running = [InFlight(host="skadi-code", kind="code", priority=2, since=NOW) for _ in range(2)]
    code, text = bead("c"), bead("t", kind="text")
    plan = planner(settings, flights=running, ready=[code, text])

    choice, _ = plan.choose(code, priority=2, room={"fenrir-chat": 6, "skadi-code": 2})

    assert choice is not None and choice.host == "skadi-code"


def seed_overflow_settings() -> Settings:
    """The seed fleet with issue 12's speeds (fenrir code 0.7; surtr code 0.7, text 0.8) and
    every kind expected to take 10 s on its own hosts."""
    hosts = {name: host.model_dump() for name, host in load_settings().hosts.items()}
    for name, speeds in SEED_OVERFLOW.items():
        hosts[name]["overflow"] = dict(speeds)
    return load_settings(hosts=hosts, scheduling={"expected_s": dict.fromkeys(
        ("code", "text", "reasoning"), 10.0)})  # fmt: skip


def busy(host: str, kind: str, *, running: int, queued: int, ran_s: float) -> list[InFlight]:
    """``running`` tasks started ``ran_s`` ago and ``queued`` waiting behind them on ``host``."""
    return [InFlight(host=host, kind=kind, priority=2, since=NOW - ran_s, running=True)
            for _ in range(running)] + [
            InFlight(host=host, kind=kind, priority=2, since=NOW, running=False)
            for _ in range(queued)]  # fmt: skip


#: surtr idle and free; skadi and fenrir without room for more p2 work.
ROOM = {"surtr-reasoning": 4, "fenrir-chat": 0, "skadi-code": 0}


def test_an_overflow_slot_goes_to_the_bead_that_gains_most_from_it() -> None:
    """surtr is free. Text waits for fenrir until 22 s (surtr: 12.5 s, 9.5 s sooner); code waits
    for skadi until 30 s (surtr: 14.3 s, 15.7 s sooner). The text bead comes first in Beads'
    order but leaves surtr to the code bead, which loses more by waiting."""
    settings = seed_overflow_settings()
    flights = [*busy("skadi-code", "code", running=2, queued=2, ran_s=0.0),
               *busy("fenrir-chat", "text", running=3, queued=3, ran_s=8.0)]  # fmt: skip
    text, code = bead("t", kind="text"), bead("c")
    plan = planner(settings, flights=flights, ready=[text, code])

    assert plan.choose(text, priority=2, room=ROOM) == (None, "text")
    choice, _ = plan.choose(code, priority=2, room=ROOM)
    assert choice is not None and (choice.host, choice.overflow) == ("surtr-reasoning", True)
    assert choice.gain_s == pytest.approx(30.0 - 10.0 / 0.7)


def test_the_first_bead_keeps_the_overflow_slot_when_it_gains_most() -> None:
    """The same with skadi's queue empty: code would be only 5.7 s sooner on surtr, text still
    9.5 s, so the text bead takes surtr in its turn."""
    settings = seed_overflow_settings()
    flights = [*busy("skadi-code", "code", running=2, queued=0, ran_s=0.0),
               *busy("fenrir-chat", "text", running=3, queued=3, ran_s=8.0)]  # fmt: skip
    text, code = bead("t", kind="text"), bead("c")
    plan = planner(settings, flights=flights, ready=[text, code])

    choice, _ = plan.choose(text, priority=2, room=ROOM)
    assert choice is not None and choice.host == "surtr-reasoning"
    assert choice.gain_s == pytest.approx(22.0 - 12.5)


def test_beads_of_one_kind_take_an_overflow_slot_in_beads_order() -> None:
    """Equal beads gain equally: the first one goes, none yields to its twin."""
    settings = seed_overflow_settings()
    flights = [*busy("skadi-code", "code", running=2, queued=2, ran_s=0.0),
               *busy("fenrir-chat", "text", running=3, queued=3, ran_s=8.0)]  # fmt: skip
    first, second = bead("c1"), bead("c2")
    plan = planner(settings, flights=flights, ready=[first, second])

    choice, _ = plan.choose(first, priority=2, room=ROOM)
    assert choice is not None and choice.host == "surtr-reasoning"


def test_only_beads_of_the_same_level_compete_for_an_overflow_slot() -> None:
    """A p3 code bead that would gain more does not hold back a p2 text bead."""
    settings = seed_overflow_settings()
    flights = [*busy("skadi-code", "code", running=2, queued=2, ran_s=0.0),
               *busy("fenrir-chat", "text", running=3, queued=3, ran_s=8.0)]  # fmt: skip
    text, code = bead("t", kind="text"), bead("c", priority=3)
    plan = planner(settings, flights=flights, ready=[text, code])

    choice, _ = plan.choose(text, priority=2, room=ROOM)
    assert choice is not None and choice.host == "surtr-reasoning"


def test_oldest_ledger_entries_per_host_count_as_running() -> None:
    """Without running flags, the oldest ``slots`` entries of a host run, the rest are queued."""
    settings = load_settings()
    flights = [
        InFlight(host="skadi-code", kind="code", priority=2, since=NOW - s) for s in (1, 3, 2)
    ]
    plan = planner(settings, flights=flights, ready=[])

    jobs = plan.jobs["skadi-code"]
    assert [j.running_s for j in jobs] == [3.0, 2.0, None]


def test_promoted_lists_only_beads_aging_has_raised() -> None:
    """A p3 past aging_s is promoted; a young p3 and an old p1 are not."""
    settings = load_settings(scheduling={"aging_s": 60})
    ready = [bead("old", priority=3, age_s=61), bead("young", priority=3), bead("p1", priority=1,
             age_s=1e4)]  # fmt: skip

    rows = promoted(ready, settings=settings, now=NOW)

    assert rows == [{"bead": "old", "filed": "p3", "now": "p2", "waited_s": 61.0}]


def test_the_celery_dispatcher_tells_running_from_queued_by_the_workers_markers() -> None:
    """A task sent long ago but still queued is not taken for one about to finish: only tasks
    with a worker's running marker count as running, and from their start, not their send."""
    sent = [
        Entry(bead=f"b{n}", attempt=1, task_id=f"t{n}", host="skadi-code", kind="code",
              priority=2, state=EntryState.SENT, since=NOW - 100)
        for n in range(3)
    ]  # fmt: skip
    done = Entry(bead="old", attempt=1, task_id="t-old", host="skadi-code", kind="code",
                 priority=2, state=EntryState.REQUEUED, since=NOW - 500)  # fmt: skip
    flights = _flights([*sent, done], {"t1": ("skadi@x", 42, NOW - 5)})

    assert [(f.running, f.since) for f in flights] == [
        (False, NOW - 100), (True, NOW - 5), (False, NOW - 100)
    ]  # fmt: skip
    plan = planner(load_settings(), flights=flights, ready=[])
    load = plan.loads(room={}, down=set())["skadi-code"]
    # One slot busy for 5 s more of its expected service, one free: the next start is now; the
    # two queued tasks go first at their priority, so a p2 starts when the first of them ends.
    expected = MemoryEstimates(load_settings()).table().expected_s("skadi-code", "code")
    assert load.start_s(3) == expected
