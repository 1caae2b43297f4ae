"""One poll's scheduling snapshot: the ready list's order and where each bead goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from yggcelery.beads import Issue
from yggcelery.dispatch.plan import InFlight, Planner, ordered, promoted
from yggcelery.estimates import MemoryEstimates
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
