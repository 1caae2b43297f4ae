"""Scheduling policy: earliest expected finish, overflow only when sooner, aging, order."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yggcelery.beads import Issue
from yggcelery.estimates import MemoryEstimates, RedisEstimates
from yggcelery.scheduling import (
    Candidate,
    Choice,
    HostLoad,
    Job,
    ReadyBead,
    ServiceTimes,
    bead_hint_s,
    candidates_for,
    choose_host,
    dispatch_order,
    effective_priority,
    outbid,
    own_waiting,
)
from yggcelery.settings import SchedulingSettings, Settings, load_settings
from yggcelery.testing.redis import RedisServer


def overflow_settings(**overrides: Any) -> Settings:
    """The seed fleet with fenrir allowed code at 0.7, surtr code at 0.7 and text at 0.8."""
    hosts = {name: host.model_dump() for name, host in load_settings().hosts.items()}
    hosts["fenrir-chat"]["overflow"] = {"code": 0.7}
    hosts["surtr-reasoning"]["overflow"] = {"code": 0.7, "text": 0.8}
    return load_settings(hosts=hosts, **overrides)


def idle(settings: Settings, **changes: HostLoad) -> dict[str, HostLoad]:
    """Every host idle with room, except those given."""
    loads = {n: HostLoad(name=n, slots=h.slots) for n, h in settings.hosts.items()}
    return loads | changes


def busy(name: str, *, slots: int = 2, remaining_s: float = 10.0, room: int = 1) -> HostLoad:
    """A host whose slots all run p2 work with ``remaining_s`` to go."""
    jobs = tuple(Job(priority=2, expected_s=remaining_s, running_s=0.0) for _ in range(slots))
    return HostLoad(name=name, slots=slots, jobs=jobs, room=room)


def choose(settings: Settings, loads: dict[str, HostLoad], *, kind: str = "code") -> str | None:
    candidates = candidates_for(
        kind, settings=settings, loads=loads, times=MemoryEstimates(settings).table()
    )
    choice = choose_host(candidates, priority=2)
    return choice.host if choice else None


def test_an_idle_own_host_beats_a_slower_idle_host() -> None:
    """Code on an idle fleet goes to skadi (10 s) rather than fenrir (10 / 0.7 s)."""
    settings = overflow_settings()
    assert choose(settings, idle(settings)) == "skadi-code"


def test_work_overflows_when_it_finishes_sooner_elsewhere() -> None:
    """With skadi's slots busy for 10 s more, code finishes sooner on an idle overflow host."""
    settings = overflow_settings()
    loads = idle(settings, **{"skadi-code": busy("skadi-code", remaining_s=10.0)})
    choice = choose_host(
        candidates_for(
            "code", settings=settings, loads=loads, times=MemoryEstimates(settings).table()
        ),
        priority=2,
    )
    assert choice is not None and choice.overflow
    # a tie with surtr: fenrir, able to run two kinds against surtr's three
    assert choice.host == "fenrir-chat"
    assert choice.finish_s == pytest.approx(10.0 / 0.7)


def test_work_stays_home_when_the_own_host_is_sooner() -> None:
    """Skadi free in 4 s finishes code at 14 s: sooner than fenrir's 14.3 s, so no overflow."""
    settings = overflow_settings()
    loads = idle(settings, **{"skadi-code": busy("skadi-code", remaining_s=4.0)})
    assert choose(settings, loads) == "skadi-code"


def test_a_pinned_fleet_never_overflows() -> None:
    """Without overflow settings a busy skadi still gets the code: no other host may run it."""
    settings = load_settings()
    loads = idle(settings, **{"skadi-code": busy("skadi-code", remaining_s=100.0)})
    assert choose(settings, loads) == "skadi-code"


def test_an_equal_finish_goes_to_the_own_host() -> None:
    """A tie between an own host and an overflow host goes to the own host."""
    own = Candidate(load=busy("own", remaining_s=4.0), service_s=10.0, primary=True)
    other = Candidate(load=HostLoad(name="other", slots=1), service_s=14.0, primary=False)
    for order in ([own, other], [other, own]):
        choice = choose_host(order, priority=2)
        assert choice is not None and (choice.host, choice.overflow) == ("own", False)


def test_an_overflow_sooner_only_by_estimate_noise_stays_home() -> None:
    """Overflow must beat the own host by more than a tie (2 % of its service time): 1.4 %
    sooner is noise in the estimates and the bead stays on its own host; 3.5 % is not."""
    own = Candidate(load=busy("own", remaining_s=4.2), service_s=10.0, primary=True)
    near = Candidate(load=HostLoad(name="near", slots=1), service_s=14.0, primary=False)
    far = Candidate(load=HostLoad(name="far", slots=1), service_s=13.7, primary=False)
    assert choose_host([own, near], priority=2).host == "own"  # type: ignore[union-attr]
    choice = choose_host([own, far], priority=2)
    assert choice is not None and (choice.host, choice.overflow) == ("far", True)


def test_a_near_tie_between_overflow_hosts_goes_to_the_less_versatile() -> None:
    """Code 0.05 s sooner on surtr (reasoning, text, code) than on fenrir (text, code) is a tie
    (within 2 % of 14.3 s): fenrir gets it, surtr stays free for what only it can run. Beyond
    a tie the sooner host wins whatever it can run."""
    settings = overflow_settings()

    def loads_with(surtr_free_in_s: float) -> dict[str, HostLoad]:
        return idle(
            settings,
            **{
                "skadi-code": busy("skadi-code", remaining_s=30.0),
                "fenrir-chat": busy("fenrir-chat", slots=3, remaining_s=1.0),
                "surtr-reasoning": busy("surtr-reasoning", remaining_s=surtr_free_in_s),
            },
        )

    assert choose(settings, loads_with(0.95)) == "fenrir-chat"
    assert choose(settings, loads_with(0.5)) == "surtr-reasoning"


def test_a_full_overflow_host_that_is_sooner_makes_the_bead_wait() -> None:
    """Skadi busy for 30 s; fenrir would finish the code first but its broker window is full:
    the bead waits for it (its room opens as its next task ends) rather than take surtr, later
    by a second. With room on fenrir it goes there; with fenrir down, to surtr."""
    settings = overflow_settings()

    def loads_with(fenrir_room: int, *, fenrir_up: bool = True) -> dict[str, HostLoad]:
        jobs = busy("fenrir-chat", slots=3, remaining_s=0.0).jobs
        fenrir = HostLoad(name="fenrir-chat", slots=3, jobs=jobs, room=fenrir_room, up=fenrir_up)
        return idle(
            settings,
            **{
                "skadi-code": busy("skadi-code", remaining_s=30.0),
                "fenrir-chat": fenrir,
                "surtr-reasoning": busy("surtr-reasoning", remaining_s=1.0),
            },
        )

    assert choose(settings, loads_with(0)) is None
    assert choose(settings, loads_with(1)) == "fenrir-chat"
    assert choose(settings, loads_with(0, fenrir_up=False)) == "surtr-reasoning"


def test_ties_between_own_hosts_go_to_configuration_order() -> None:
    """Two equal own hosts: the first configured one."""
    a = Candidate(load=HostLoad(name="a", slots=1), service_s=5.0, primary=True)
    b = Candidate(load=HostLoad(name="b", slots=1), service_s=5.0, primary=True)
    assert choose_host([a, b], priority=1) == choose_host([a, b], priority=3)
    assert choose_host([b, a], priority=1).host == "b"  # type: ignore[union-attr]


def test_a_full_own_host_that_is_sooner_makes_the_bead_wait() -> None:
    """Skadi without room but free in 1 s: the bead waits for it rather than overflow now."""
    settings = overflow_settings()
    loads = idle(settings, **{"skadi-code": busy("skadi-code", remaining_s=1.0, room=0)})
    assert choose(settings, loads) is None


def test_a_full_own_host_that_is_later_lets_the_bead_overflow() -> None:
    """Skadi without room and busy for 30 s: the bead goes to an overflow host now."""
    settings = overflow_settings()
    loads = idle(settings, **{"skadi-code": busy("skadi-code", remaining_s=30.0, room=0)})
    assert choose(settings, loads) == "fenrir-chat"


def test_a_host_with_its_own_work_waiting_takes_no_overflow() -> None:
    """Surtr with a reasoning bead waiting in Beads is left to it: code overflows to fenrir."""
    settings = overflow_settings()
    waiting = own_waiting(["reasoning"], settings)
    assert waiting == {"surtr-reasoning": 1, "fenrir-chat": 0, "skadi-code": 0}
    loads = idle(
        settings,
        **{
            "skadi-code": busy("skadi-code", remaining_s=30.0),
            "surtr-reasoning": HostLoad(name="surtr-reasoning", slots=2, own_waiting=1),
        },
    )
    assert choose(settings, loads) == "fenrir-chat"


def test_waiting_beads_of_an_unserved_kind_count_for_the_default_kinds_hosts() -> None:
    """A ``kind:poetry`` bead waits for fenrir (text, the default kind), as routing sends it."""
    assert own_waiting(["poetry", "code"], load_settings()) == {
        "surtr-reasoning": 0,
        "fenrir-chat": 1,
        "skadi-code": 1,
    }


def test_a_down_own_host_sends_work_to_an_overflow_host() -> None:
    """With skadi down, code goes to the fastest idle overflow host."""
    hosts = {name: host.model_dump() for name, host in load_settings().hosts.items()}
    hosts["fenrir-chat"]["overflow"] = {"code": 0.7}
    hosts["surtr-reasoning"]["overflow"] = {"code": 0.5}
    settings = load_settings(hosts=hosts)
    loads = idle(settings, **{"skadi-code": HostLoad(name="skadi-code", slots=2, up=False)})
    assert choose(settings, loads) == "fenrir-chat"


def test_no_host_with_room_means_no_choice() -> None:
    """When no able host has room, the bead stays in Beads."""
    settings = load_settings()
    loads = idle(settings, **{"skadi-code": HostLoad(name="skadi-code", slots=2, room=0)})
    assert choose(settings, loads) is None


def test_queued_work_counts_only_at_the_beads_priority_or_more_urgent() -> None:
    """Ten queued p3 tasks delay a p3 bead, not a p0 one; running ones delay both."""
    running = tuple(Job(priority=3, expected_s=10.0, running_s=6.0) for _ in range(2))
    queued = tuple(Job(priority=3, expected_s=10.0) for _ in range(10))
    load = HostLoad(name="h", slots=2, jobs=running + queued)
    assert load.start_s(0) == pytest.approx(4.0)
    assert load.start_s(3) == pytest.approx(4.0 + 50.0)


def test_a_free_slot_starts_a_bead_now() -> None:
    """One of two slots busy and nothing queued: a new bead starts at once."""
    load = HostLoad(name="h", slots=2, jobs=(Job(priority=2, expected_s=10.0, running_s=1.0),))
    assert load.start_s(2) == 0.0


def test_a_task_past_its_estimate_is_expected_to_end_now() -> None:
    """A task running longer than expected frees its slot 'now', never in the past."""
    assert Job(priority=2, expected_s=5.0, running_s=9.0).remaining_s == 0.0


def test_a_beads_hint_overrides_the_estimate_and_scales_with_speed() -> None:
    """``metadata.ygg.expected_s`` is the time on the kind's own host, divided by each speed."""
    settings = overflow_settings()
    candidates = candidates_for(
        "code",
        settings=settings,
        loads=idle(settings),
        times=MemoryEstimates(settings).table(),
        hint_s=7.0,
    )
    assert {c.load.name: round(c.service_s, 3) for c in candidates} == {
        "skadi-code": 7.0,
        "fenrir-chat": 10.0,
        "surtr-reasoning": 10.0,
    }
    assert [c.primary for c in candidates] == [True, False, False]


def test_a_kind_no_host_serves_is_scheduled_as_the_default_kind() -> None:
    """An unserved kind goes where the default kind (text) goes, as routing sends it."""
    settings = overflow_settings()
    loads = idle(settings)
    names = [
        c.load.name
        for c in candidates_for(
            "poetry", settings=settings, loads=loads, times=MemoryEstimates(settings).table()
        )
    ]
    assert names == ["fenrir-chat", "surtr-reasoning"]


def spill(host: str, gain_s: float) -> Choice:
    return Choice(host=host, finish_s=10.0, overflow=True, gain_s=gain_s)


def test_an_overflow_is_outbid_only_by_a_larger_gain_on_the_same_host() -> None:
    """Another bead of the level outbids an overflow to surtr only by gaining strictly more from
    surtr; a bead going home, elsewhere, waiting, or gaining as much does not."""
    mine = spill("surtr-reasoning", 5.0)
    home = Choice(host="skadi-code", finish_s=10.0, overflow=False)
    assert outbid(mine, [spill("surtr-reasoning", 9.0)])
    assert not outbid(mine, [spill("surtr-reasoning", 5.0), spill("fenrir-chat", 20.0)])
    assert not outbid(mine, [home, None])
    assert not outbid(home, [spill("skadi-code", 99.0)])  # a bead going home never yields


def test_an_overflow_records_how_much_sooner_it_finishes() -> None:
    """``gain_s``: the own hosts' earliest finish (room or not) minus the overflow finish."""
    settings = overflow_settings()
    loads = idle(settings, **{"skadi-code": busy("skadi-code", remaining_s=10.0, room=0)})
    cands = candidates_for("code", settings=settings, loads=loads,
                           times=MemoryEstimates(settings).table())  # fmt: skip
    choice = choose_host(cands, priority=2)
    assert choice is not None and choice.overflow
    assert choice.gain_s == pytest.approx(20.0 - 10.0 / 0.7)


def list_schedule_makespan_s(settings: Settings, kinds: list[str]) -> float:
    """Play a dispatcher on exact estimates: at t=0 and whenever a slot frees, send the waiting
    beads in order to their chosen hosts (a broker window of 2 x slots, as the Celery
    dispatcher's), each host running its queue in order on its slots."""
    times = MemoryEstimates(settings).table()
    running: dict[str, list[tuple[float, float]]] = {n: [] for n in settings.hosts}  # start, end
    queued: dict[str, list[float]] = {n: [] for n in settings.hosts}
    waiting, now, makespan = list(kinds), 0.0, 0.0
    while waiting or any(running.values()) or any(queued.values()):
        for name, host in settings.hosts.items():
            running[name] = [(s, e) for s, e in running[name] if e > now]
            while queued[name] and len(running[name]) < host.slots:
                service_s = queued[name].pop(0)
                running[name].append((now, now + service_s))
                makespan = max(makespan, now + service_s)
        for kind in list(waiting):
            loads = {
                n: _load(n, h.slots, running[n], queued[n], now=now)
                for n, h in settings.hosts.items()
            }
            cands = candidates_for(kind, settings=settings, loads=loads, times=times)
            choice = choose_host(cands, priority=2)
            if choice is not None:
                waiting.remove(kind)
                queued[choice.host].append(times.expected_s(choice.host, kind))
                break  # the loads changed: place the next bead on the new ones
        else:
            ends = [e for spans in running.values() for _, e in spans if e > now]
            if not ends:
                assert not waiting, f"nothing runs and {waiting} cannot be placed"
                break
            now = min(ends)
    return makespan


def _load(
    name: str, slots: int, running: list[tuple[float, float]], queued: list[float], *, now: float
) -> HostLoad:
    jobs = [
        Job(priority=2, expected_s=end - start, running_s=now - start) for start, end in running
    ]
    jobs += [Job(priority=2, expected_s=service_s) for service_s in queued]
    return HostLoad(name=name, slots=slots, jobs=tuple(jobs), room=2 * slots - len(jobs))


def test_earliest_finish_routing_halves_the_20_20_makespan_with_overflow() -> None:
    """20 code + 20 text of 10 s: pinned, skadi alone takes 100 s; with overflow about 70 s."""
    expected = {"reasoning": 10.0, "text": 10.0, "code": 10.0}
    kinds = ["code", "text"] * 20
    pinned = load_settings(scheduling={"expected_s": expected})
    assert list_schedule_makespan_s(pinned, kinds) == pytest.approx(100.0)
    spread = overflow_settings(scheduling={"expected_s": expected})
    assert list_schedule_makespan_s(spread, kinds) <= 70.0


@pytest.mark.parametrize(
    ("priority", "waited_s", "expected"),
    [(4, 0.0, 4), (4, 59.9, 4), (4, 60.0, 3), (4, 150.0, 2), (4, 180.0, 1), (4, 1e9, 1),
     (3, 1e9, 1), (2, 60.0, 1), (1, 1e9, 1), (0, 1e9, 0)],
)  # fmt: skip
def test_aging_raises_one_level_per_aging_s_up_to_p1(
    priority: int, waited_s: float, expected: int
) -> None:
    """One level per 60 s waited; p1 is the ceiling; p0 and p1 never move."""
    assert effective_priority(priority, waited_s=waited_s, aging_s=60.0) == expected


@given(
    priority=st.integers(min_value=0, max_value=4),
    waited_s=st.floats(min_value=0, max_value=1e12, allow_nan=False),
    aging_s=st.floats(min_value=1e-3, max_value=1e6),
)
def test_aging_never_reaches_p0_and_never_demotes(
    priority: int, waited_s: float, aging_s: float
) -> None:
    """Whatever the wait, an aged bead stays at p1 or below and no less urgent than filed."""
    level = effective_priority(priority, waited_s=waited_s, aging_s=aging_s)
    assert level <= priority
    assert level >= min(priority, 1)


def test_aging_off_keeps_every_priority() -> None:
    """``aging_s = 0`` turns aging off."""
    assert effective_priority(4, waited_s=1e9, aging_s=0.0) == 4


def ready(bead: str, priority: int, *, waited_s: float = 0.0, expected_s: float = 0.0) -> ReadyBead:
    return ReadyBead(bead=bead, priority=priority, waited_s=waited_s, expected_s=expected_s)


def test_dispatch_order_keeps_beads_order_within_a_level() -> None:
    """By default equal levels keep the order Beads gave (newest first is Beads' choice)."""
    beads = [ready("p1-new", 1), ready("p1-old", 1), ready("p2", 2), ready("p4", 4)]
    order = dispatch_order(beads, policy=SchedulingSettings(aging_s=0))
    assert [b.bead for b in order] == ["p1-new", "p1-old", "p2", "p4"]


def test_aged_beads_go_first_within_the_level_they_reach() -> None:
    """A p4 that waited 3 × aging_s reaches p1 and goes before p1 beads filed as p1."""
    beads = [
        ready("p1", 1),
        ready("p3-aged", 3, waited_s=130.0),
        ready("p4-aged", 4, waited_s=200.0),
    ]
    order = dispatch_order(beads, policy=SchedulingSettings(aging_s=60.0))
    assert [b.bead for b in order] == ["p4-aged", "p3-aged", "p1"]


def test_a_real_p0_goes_before_every_aged_bead() -> None:
    """However long a p4 waited, a p0 filed as p0 goes first."""
    beads = [ready("old", 4, waited_s=1e9), ready("urgent", 0)]
    order = dispatch_order(beads, policy=SchedulingSettings(aging_s=1.0))
    assert [b.bead for b in order] == ["urgent", "old"]


def test_shortest_first_orders_within_a_level_only() -> None:
    """``order = "shortest"`` sorts each level by expected seconds; levels stay in order."""
    beads = [ready("p2-long", 2, expected_s=30.0), ready("p2-short", 2, expected_s=5.0),
             ready("p3-shortest", 3, expected_s=1.0)]  # fmt: skip
    order = dispatch_order(beads, policy=SchedulingSettings(order="shortest", aging_s=0))
    assert [b.bead for b in order] == ["p2-short", "p2-long", "p3-shortest"]


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [({"ygg": {"expected_s": 12}}, 12.0), ({"ygg": {"expected_s": 0}}, None),
     ({"ygg": {"expected_s": "12"}}, None), ({"ygg": {"expected_s": True}}, None),
     ({"ygg": {"expected_s": float("inf")}}, None), ({"ygg": "x"}, None), (None, None)],
)  # fmt: skip
def test_a_beads_hint_is_a_positive_number_or_nothing(metadata: object, expected: object) -> None:
    """Only a positive finite ``metadata.ygg.expected_s`` is a hint; anything else is ignored."""
    issue = Issue.model_validate({"id": "b-1", "title": "t", "metadata": metadata})
    assert bead_hint_s(issue) == expected


def test_measured_durations_move_work_to_a_faster_host(redis_db: RedisServer) -> None:
    """Skadi measured at 40 s a code task (shared in Redis) makes code overflow (to fenrir,
    tied with surtr and the less versatile)."""
    settings = overflow_settings(result_backend=redis_db.url(1))
    estimates = RedisEstimates.from_settings(settings)
    loads = idle(settings, **{"skadi-code": busy("skadi-code", remaining_s=1.0)})

    def chosen(times: ServiceTimes) -> str | None:
        choice = choose_host(
            candidates_for("code", settings=settings, loads=loads, times=times), priority=2
        )
        return choice.host if choice else None

    assert chosen(estimates.table()) == "skadi-code"
    for _ in range(10):
        estimates.observe("skadi-code", "code", 40.0)
    assert estimates.table().expected_s("skadi-code", "code") > 30.0
    assert chosen(RedisEstimates.from_settings(settings).table()) == "fenrir-chat"
