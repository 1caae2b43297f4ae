"""The benchmark: bound math, scenarios, figures from records, and the report's shape.

No benchmark figure is asserted here (the machine is shared and noisy): only the arithmetic on
given numbers, and that a real tiny run produces a complete report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yggcelery.bench import metrics
from yggcelery.bench.bound import HostSlots, bound_s, span_bound_s, work_bound_s
from yggcelery.bench.cli import run_suite
from yggcelery.bench.report import median_run
from yggcelery.bench.runner import RunOptions
from yggcelery.bench.scenarios import SCENARIOS, BenchTask, get_scenario
from yggcelery.settings import load_settings

SEED = {
    "surtr-reasoning": HostSlots(slots=2, kinds=("reasoning",)),
    "fenrir-chat": HostSlots(slots=3, kinds=("text",)),
    "skadi-code": HostSlots(slots=2, kinds=("code",)),
}
REPORT_KEYS = (
    "makespan_s",
    "bound_s",
    "ratio_to_bound",
    "utilization",
    "p0_wait_s",
    "wait_by_priority_s",
    "queue_depth",
    "peak_rss_mib",
    "cpu_s",
    "ctx_switches",
)


def task(kind: str, service_s: float, *, arrival_s: float = 0.0, priority: int = 2) -> BenchTask:
    return BenchTask(
        key="t", title="t", kind=kind, priority=priority, service_s=service_s, arrival_s=arrival_s
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


def test_an_unserved_kind_counts_as_the_default_kind() -> None:
    """A kind no host serves is bounded where the default kind runs."""
    assert work_bound_s([task("poetry", 30.0)], SEED) == pytest.approx(10.0)


def test_scenarios_have_the_documented_shapes() -> None:
    """seed6, 20+20, mixed50 and flood have the sizes, kinds and arrivals the README states."""
    seed6 = get_scenario("seed6")
    assert [(t.kind, t.priority) for t in seed6.tasks] == [
        ("code", 0), ("text", 0), ("reasoning", 1), ("text", 2), ("code", 2), ("text", 3),
    ]  # fmt: skip
    synthetic = get_scenario("synthetic_20_20").tasks
    assert sorted({(t.kind, t.service_s) for t in synthetic}) == [("code", 10.0), ("text", 10.0)]
    assert len(synthetic) == 40
    mixed = get_scenario("mixed50").tasks
    assert len(mixed) == 50
    assert {t.priority for t in mixed} == {0, 1, 2, 3, 4}
    assert {t.kind for t in mixed} == {"code", "text", "reasoning"}
    flood = get_scenario("flood").tasks
    assert [t.priority for t in flood].count(3) == 30
    assert [(t.priority, t.arrival_s) for t in flood if t.arrival_s > 0] == [(0, 1.0)]


def test_mixed50_is_the_same_every_time() -> None:
    """The seeded RNG makes mixed50 reproducible."""
    assert get_scenario("mixed50") == get_scenario("mixed50")


def test_unknown_scenario_names_the_known_ones() -> None:
    """A typo in a scenario name lists the scenarios there are."""
    with pytest.raises(ValueError, match="seed6"):
        get_scenario("seed7")


def rec(bead: str, host: str, arrived: float, started: float, finished: float) -> dict[str, object]:
    return {"bead": bead, "host": host, "status": 200, "slot": 0,
            "arrived": arrived, "started": started, "finished": finished}  # fmt: skip


def test_figures_from_records() -> None:
    """Waits, utilisation, queue depth and host concurrency from hand-made records."""
    records = [
        rec("a", "h", 100.0, 100.0, 101.0),
        rec("b", "h", 100.0, 100.5, 101.5),
        rec("c", "h", 101.0, 101.0, 102.0),
        {**rec("d", "h", 100.0, 100.0, 100.1), "status": 503},
    ]
    served = metrics.served_requests(records, beads={"a": 0, "b": 3, "c": 3, "d": 3})
    assert [s.bead for s in served] == ["a", "b", "c"]
    arrivals = {"a": 100.0, "b": 100.0, "c": 100.2}
    waits = metrics.waits_s(served, arrivals=arrivals, time_scale=0.1)
    assert waits == pytest.approx({"a": 0.0, "b": 5.0, "c": 8.0})
    by_priority = metrics.wait_by_priority(waits, {"a": 0, "b": 3, "c": 3})
    assert by_priority["p3"] == {"n": 2, "mean": 6.5, "median": 6.5, "max": 8.0}
    util = metrics.utilisation(served, slots={"h": 2}, makespan_s=20.0, time_scale=0.1)
    assert util == {"h": 0.75}
    depth = metrics.queue_depth(served, arrivals=arrivals, t0=100.0, time_scale=0.1)
    assert depth["series"] == [[0.0, 1], [2.0, 2], [5.0, 1], [10.0, 0]]
    assert depth["max"] == 2
    assert depth["series"][-1] == [10.0, 0]
    assert metrics.host_concurrency(served) == {"h": 2}
    assert metrics.start_order(served) == ["a", "b", "c"]


def test_median_run_keeps_the_middle_run_and_lists_all() -> None:
    """With three runs the one with the median makespan is reported."""
    runs = [
        {"makespan_s": 12.0, "p0_wait_s": 9.0, "id": 1},
        {"makespan_s": 10.0, "p0_wait_s": 9.5, "id": 2},
        {"makespan_s": 11.0, "p0_wait_s": 8.0, "id": 3},
    ]
    chosen = median_run(runs)
    assert chosen["id"] == 3
    assert chosen["makespan_runs_s"] == [12.0, 10.0, 11.0]
    assert chosen["p0_wait_runs_s"] == [9.0, 9.5, 8.0] and chosen["p0_wait_median_s"] == 9.0


def test_a_tiny_run_writes_a_complete_report(tmp_path: Path) -> None:
    """A real run (simulator, Beads file, dispatcher process) yields every documented field."""
    report = run_suite(
        load_settings(),
        scenarios=["seed6"],
        dispatchers=["asyncio", "legacy"],
        options=RunOptions(time_scale=0.01),
        results_dir=tmp_path,
    )
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert saved["time_scale"] == 0.01
    assert set(saved["scenarios"]) == {"seed6"}
    for name in ("asyncio", "legacy"):
        run = saved["scenarios"]["seed6"][name]
        assert set(REPORT_KEYS) <= set(run)
        assert run["closed"] == run["beads"] == 6
        assert set(run["utilization"]) == set(SEED)
        assert set(run["wait_by_priority_s"]) == {"p0", "p1", "p2", "p3"}
        assert Path(run["timeline_png"]).is_file()
    assert report["scenarios"]["seed6"]["asyncio"]["bound_s"] == pytest.approx(20.0)
    assert len(list(tmp_path.glob("bench-*.json"))) == 1


def test_every_scenario_is_registered() -> None:
    """The CLI's scenario names are exactly the four documented ones."""
    assert set(SCENARIOS) == {"seed6", "synthetic_20_20", "mixed50", "flood"}
