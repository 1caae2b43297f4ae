"""The benchmark's bounds: pinned work, the overflow-aware fluid program, and the span."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from yggcelery.bench.bound import (
    Bounds,
    HostSlots,
    bound_s,
    bounds,
    fluid_bound_s,
    hosts_of,
    span_bound_s,
    work_bound_s,
)
from yggcelery.bench.scenarios import SEED_OVERFLOW, BenchTask, get_scenario
from yggcelery.settings import load_settings

SEED = {
    "surtr-reasoning": HostSlots(slots=2, kinds=("reasoning",)),
    "fenrir-chat": HostSlots(slots=3, kinds=("text",)),
    "skadi-code": HostSlots(slots=2, kinds=("code",)),
}
#: The seed fleet with fenrir code at 0.7, surtr code at 0.7 and text at 0.8.
OVERFLOW = {
    name: HostSlots(slots=h.slots, kinds=h.kinds, overflow=SEED_OVERFLOW.get(name, {}))
    for name, h in SEED.items()
}


def task(kind: str, service_s: float, *, arrival_s: float = 0.0) -> BenchTask:
    return BenchTask(
        key="t", title="t", kind=kind, priority=2, service_s=service_s, arrival_s=arrival_s
    )


def test_bound_of_20_code_and_20_text_tasks_is_the_code_host() -> None:
    """20 × 10 s of code on 2 slots bounds the 20 + 20 workload at 100 s."""
    assert bound_s(list(get_scenario("synthetic_20_20").tasks), SEED) == pytest.approx(100.0)


def test_bound_is_at_least_the_longest_task() -> None:
    """One long task on an idle fleet: the bound is its own service time."""
    assert bound_s([task("reasoning", 30.0), task("code", 1.0)], SEED) == pytest.approx(30.0)


def test_span_bound_counts_late_arrivals() -> None:
    """A task arriving at t=5 with 10 s of work cannot finish before 15 s."""
    assert span_bound_s([task("code", 1.0), task("code", 10.0, arrival_s=5.0)]) == 15.0


def test_a_kind_served_by_two_hosts_gets_the_fluid_bound_over_both() -> None:
    """Text on 3 + 1 slots: 40 s of text work needs at least 10 s."""
    hosts = {**SEED, "extra": HostSlots(slots=1, kinds=("text",))}
    assert work_bound_s([task("text", 10.0)] * 4, hosts) == pytest.approx(10.0)


def test_hosts_sharing_kinds_are_bounded_together() -> None:
    """Two kinds that share one host are bounded by their joint work on the hosts serving them."""
    hosts = {"a": HostSlots(slots=1, kinds=("x", "y")), "b": HostSlots(slots=1, kinds=("y",))}
    tasks = [task("x", 10.0), task("y", 10.0), task("y", 10.0)]
    assert work_bound_s(tasks, hosts) == pytest.approx(15.0)
    assert fluid_bound_s(tasks, hosts) == pytest.approx(15.0)


def test_an_unserved_kind_counts_as_the_default_kind() -> None:
    """A kind no host serves is bounded where the default kind runs."""
    assert work_bound_s([task("poetry", 30.0)], SEED) == pytest.approx(10.0)
    assert fluid_bound_s([task("poetry", 30.0)], OVERFLOW) == pytest.approx(30.0 / (3 + 2 * 0.8))


def test_the_overflow_bound_of_the_seeds_20_20_is_about_62_s() -> None:
    """Skadi and part of surtr on code, fenrir and the rest of surtr on text: T = 15000/241.

    Code: 2T + 0.7·2aT = 200 and text: 3T + 0.8·2(1 − a)T = 200 (a: surtr's share on code).
    """
    tasks = list(get_scenario("overflow_20_20").tasks)
    assert fluid_bound_s(tasks, OVERFLOW) == pytest.approx(15000 / 241)
    both = bounds(tasks, OVERFLOW)
    assert (round(both.overflow_s, 2), both.pinned_s) == (62.24, 100.0)


def test_the_scenarios_own_settings_give_its_bound() -> None:
    """overflow_20_20 on the seed settings: its overflow speeds reach the bound through settings."""
    scenario = get_scenario("overflow_20_20")
    hosts = hosts_of(scenario.settings_for(load_settings(), time_scale=0.1))
    assert hosts == OVERFLOW
    assert bound_s(list(scenario.tasks), hosts) == pytest.approx(15000 / 241)


def test_overflow_cannot_beat_a_kind_no_one_else_may_run() -> None:
    """Reasoning stays on surtr's 2 slots: 100 s of it bounds the run at 50 s, overflow or not."""
    tasks = [task("reasoning", 10.0)] * 10 + [task("text", 10.0)] * 3
    assert bounds(tasks, OVERFLOW) == Bounds(overflow_s=50.0, pinned_s=50.0)


def test_a_faster_overflow_host_shortens_the_span() -> None:
    """A lone 30 s code task on a host running code at speed 2 needs only 15 s."""
    hosts = {**SEED, "fast": HostSlots(slots=1, kinds=("text",), overflow={"code": 2.0})}
    assert span_bound_s([task("code", 30.0)], hosts) == 15.0
    assert span_bound_s([task("code", 30.0)], hosts, pinned=True) == 30.0
    assert bounds([task("code", 30.0)], hosts) == Bounds(overflow_s=15.0, pinned_s=30.0)


def test_figures_report_both_bounds_and_the_ratio_to_each() -> None:
    """A 70 s run against bounds of 62.24 and 100 s."""
    figures = Bounds(overflow_s=62.24, pinned_s=100.0).figures(70.0)
    assert figures == {
        "bound_s": 62.24,
        "ratio_to_bound": 0.8891,
        "pinned_bound_s": 100.0,
        "ratio_to_pinned_bound": 1.4286,
    }
    assert Bounds(overflow_s=1.0, pinned_s=1.0).figures(0.0)["ratio_to_bound"] is None


KINDS = ("a", "b", "c")


@st.composite
def pinned_fleets(draw: st.DrawFn) -> tuple[dict[str, HostSlots], list[BenchTask]]:
    """Two to four pinned hosts over three kinds (each kind served), and work of each kind."""
    count = draw(st.integers(min_value=2, max_value=4))
    hosts = {
        f"h{i}": HostSlots(
            slots=draw(st.integers(min_value=1, max_value=4)),
            kinds=tuple(draw(st.sets(st.sampled_from(KINDS), min_size=1))),
        )
        for i in range(count)
    }
    served = {k for h in hosts.values() for k in h.kinds}
    tasks = [
        task(kind, draw(st.floats(min_value=0.5, max_value=50.0)))
        for kind in KINDS
        if kind in served
        for _ in range(draw(st.integers(min_value=0, max_value=6)))
    ]
    return hosts, tasks


@hsettings(max_examples=80, deadline=None)
@given(pinned_fleets())
def test_the_fluid_program_reduces_to_the_pinned_bound_without_overflow(
    fleet: tuple[dict[str, HostSlots], list[BenchTask]],
) -> None:
    """On any pinned fleet the linear program finds exactly today's max-over-kind-sets bound."""
    hosts, tasks = fleet
    pinned = work_bound_s(tasks, hosts)
    assert fluid_bound_s(tasks, hosts) == pytest.approx(pinned, rel=1e-6, abs=1e-6)
    assert bounds(tasks, hosts).overflow_s == pytest.approx(bounds(tasks, hosts).pinned_s)


@pytest.mark.parametrize("name", ["seed6", "synthetic_20_20", "mixed50", "flood", "starve"])
def test_pinned_scenarios_keep_todays_bound(name: str) -> None:
    """Scenarios without overflow have one bound: the overflow-aware one equals the pinned one."""
    scenario = get_scenario(name)
    hosts = hosts_of(scenario.settings_for(load_settings(), time_scale=1.0))
    tasks = list(scenario.tasks)
    today = max(work_bound_s(tasks, SEED), span_bound_s(tasks))
    both = bounds(tasks, hosts)
    assert both.overflow_s == pytest.approx(today)
    assert both.pinned_s == pytest.approx(today)
