"""The benchmark: scenarios, figures from records, and the report's shape (bounds: test_bound).

No benchmark figure is asserted here (the machine is shared and noisy): only the arithmetic on
given numbers, and that a real tiny run produces a complete report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from yggcelery.bench import metrics
from yggcelery.bench.bound import HostSlots
from yggcelery.bench.cli import run_suite
from yggcelery.bench.report import median_run, print_table
from yggcelery.bench.runner import RunOptions
from yggcelery.bench.scenarios import SCENARIOS, SEED_OVERFLOW, SEED_SLOTS, BenchTask, get_scenario
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
    "pinned_bound_s",
    "ratio_to_pinned_bound",
    "utilization",
    "p0_wait_s",
    "wait_by_priority_s",
    "queue_depth",
    "peak_rss_mib",
    "cpu_s",
    "ctx_switches",
    "gpu_use_while_waiting",
    "completion_s",
    "max_wait_by_priority_s",
)


def task(kind: str, service_s: float, *, arrival_s: float = 0.0, priority: int = 2) -> BenchTask:
    return BenchTask(
        key="t", title="t", kind=kind, priority=priority, service_s=service_s, arrival_s=arrival_s
    )


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
    """The CLI's scenario names are exactly the documented ones."""
    assert set(SCENARIOS) == {
        "seed6", "synthetic_20_20", "mixed50", "flood", "overflow_20_20", "mixed50_overflow",
        "mixed50_hinted", "mixed50_shortest", "skewed", "starve", "starve_noaging",
    }  # fmt: skip


def test_overflow_scenarios_are_pinned_workloads_with_the_seeds_speeds() -> None:
    """overflow_20_20 and mixed50_overflow are 20+20 and mixed50 with fenrir/surtr overflow."""
    for name, pinned in (("overflow_20_20", "synthetic_20_20"), ("mixed50_overflow", "mixed50")):
        scenario = get_scenario(name)
        assert scenario.tasks == get_scenario(pinned).tasks
        assert scenario.overflow == SEED_OVERFLOW
        assert not get_scenario(pinned).overflow
    assert SEED_OVERFLOW == {
        "fenrir-chat": {"code": 0.7},
        "surtr-reasoning": {"code": 0.7, "text": 0.8},
    }
    assert get_scenario("mixed50_shortest").scheduling == {"order": "shortest"}
    assert get_scenario("mixed50_hinted").hints and not get_scenario("mixed50_overflow").hints


def test_skewed_puts_70_percent_of_the_work_on_one_kind() -> None:
    """skewed: 40 tasks of 10 s, 28 of them code, priorities 1..3, with overflow."""
    scenario = get_scenario("skewed")
    code_s = sum(t.service_s for t in scenario.tasks if t.kind == "code")
    assert code_s / scenario.total_service_s == pytest.approx(0.7)
    assert {t.priority for t in scenario.tasks} == {1, 2, 3}
    assert scenario.overflow == SEED_OVERFLOW


def test_starve_streams_p1_at_95_percent_of_each_kinds_capacity() -> None:
    """starve: p1 work per kind is 95 % of its slots over 300 s; a backlog and a p0 every 60 s."""
    tasks = get_scenario("starve").tasks
    for kind, slots in SEED_SLOTS.items():
        stream = [t for t in tasks if t.priority == 1 and t.kind == kind]
        assert max(t.arrival_s for t in stream) < 300.0
        assert sum(t.service_s for t in stream) / (slots * 300.0) == pytest.approx(0.95, abs=0.04)
    backlog = [(t.priority, t.arrival_s) for t in tasks if t.priority >= 3]
    assert sorted(backlog) == [(3, 0.0)] * 10 + [(4, 0.0)] * 10
    assert [t.arrival_s for t in tasks if t.priority == 0] == [30.0, 90.0, 150.0, 210.0, 270.0]
    assert [t.arrival_s for t in tasks] == sorted(t.arrival_s for t in tasks)


def test_starve_without_aging_differs_only_in_the_setting() -> None:
    """starve_noaging is the same workload with aging_s = 0."""
    assert get_scenario("starve_noaging").tasks == get_scenario("starve").tasks
    assert get_scenario("starve_noaging").scheduling == {"aging_s": 0.0}
    assert get_scenario("starve").scheduling == {}


def test_a_scenarios_settings_turn_overflow_on_and_scale_scheduling_times() -> None:
    """Overflow speeds apply to the run; expected times and aging go to real seconds."""
    base = load_settings()
    settings = get_scenario("starve_noaging").settings_for(base, time_scale=0.1)
    assert settings.scheduling.aging_s == 0.0
    assert settings.scheduling.expected_s["code"] == pytest.approx(
        base.scheduling.expected_s["code"] * 0.1
    )
    assert settings.hosts == base.hosts
    overflow = get_scenario("overflow_20_20").settings_for(base, time_scale=0.5)
    assert overflow.speeds_for("code") == {
        "skadi-code": 1.0,
        "fenrir-chat": 0.7,
        "surtr-reasoning": 0.7,
    }
    assert overflow.scheduling.aging_s == pytest.approx(base.scheduling.aging_s * 0.5)
    assert base.speeds_for("code") == {"skadi-code": 1.0}  # the base is left as it was


def test_a_scenario_naming_an_unknown_host_says_which() -> None:
    """Overflow for a host the settings lack is a clear error, not a silent no-op."""
    scenario = get_scenario("overflow_20_20")
    hosts = {"skadi-code": load_settings().hosts["skadi-code"].model_dump()}
    with pytest.raises(ValueError, match="overflow_20_20: no host 'fenrir-chat'"):
        scenario.settings_for(
            load_settings(hosts=hosts, routing={"default_kind": "code"}), time_scale=1.0
        )


def test_a_hinted_bead_carries_its_service_time_in_real_seconds() -> None:
    """With a hint scale the metadata adds expected_s = service × scale; without, no hint."""
    bead = task("code", 10.0)
    assert bead.metadata(hint_scale=0.2)["ygg"] == {
        "service_s": 10.0,
        "bench_key": "t",
        "expected_s": 2.0,
    }
    assert "expected_s" not in bead.metadata()["ygg"]


def test_gpu_use_counts_only_while_a_bead_waits() -> None:
    """Two slots; a waits 0..2 with one slot busy, then nothing waits while both idle: 50 %."""
    records = [
        rec("x", "h", 0.0, 0.0, 2.0),  # runs while a waits
        rec("a", "h", 0.0, 2.0, 3.0),
    ]
    served = metrics.served_requests(records, beads={"x": 2, "a": 2})
    waiting = metrics.busy_while_waiting(served, arrivals={"x": 0.0, "a": 0.0}, slots={"h": 2})
    assert waiting == {"fleet": 0.5, "hosts": {"h": 0.5}, "waiting_s": 2.0}
    idle = metrics.busy_while_waiting(served[:1], arrivals={"x": 0.0}, slots={"h": 2})
    assert idle["fleet"] is None  # x started at once: no bead ever waited


def test_gpu_use_while_waiting_spans_hosts() -> None:
    """w waits 0..4 for host a (1 slot, busy) while host b (1 slot) idles: 50 % of the fleet."""
    records = [rec("x", "a", 0.0, 0.0, 4.0), rec("w", "a", 0.0, 4.0, 5.0)]
    served = metrics.served_requests(records, beads={"x": 1, "w": 1})
    waiting = metrics.busy_while_waiting(
        served, arrivals={"x": 0.0, "w": 0.0}, slots={"a": 1, "b": 1}
    )
    assert waiting == {"fleet": 0.5, "hosts": {"a": 1.0, "b": 0.0}, "waiting_s": 4.0}


def test_completion_times_and_worst_waits_per_priority() -> None:
    """Completion = first answer − arrival; p99 of 100 values is the 99th; waits by priority."""
    records = [rec(f"b{i}", "h", 0.0, 0.0, float(i + 1)) for i in range(100)]
    beads = {f"b{i}": i % 2 for i in range(100)}
    served = metrics.served_requests(records, beads=beads)
    arrivals = dict.fromkeys(beads, 0.0)
    done = metrics.completion_s(served, arrivals=arrivals, time_scale=0.5)
    assert done == {"n": 100, "mean": 101.0, "p99": pytest.approx(198.02), "max": 200.0}
    late = [
        rec("a", "h", 0.0, 3.0, 4.0),
        rec("b", "h", 0.0, 1.0, 2.0),
        rec("c", "h", 0.0, 5.0, 6.0),
    ]
    figures = metrics.schedule_figures(
        metrics.served_requests(late, beads={"a": 3, "b": 0, "c": 3}),
        arrivals={"a": 0.0, "b": 0.0, "c": 0.0},
        priorities={"a": 3, "b": 0, "c": 3},
        slots={"h": 1},
        time_scale=0.5,
    )
    assert figures["max_wait_by_priority_s"] == {"p0": 2.0, "p3": 10.0}
    assert figures["completion_s"]["max"] == 12.0
    assert figures["waiting_s"] == 10.0


def test_the_report_prints_both_bounds_and_the_scheduling_figures() -> None:
    """The printed tables carry both bounds, both ratios, GPU use while waiting and worst waits."""
    run = {
        "makespan_s": 70.0, "bound_s": 62.24, "ratio_to_bound": 0.8891, "pinned_bound_s": 100.0,
        "ratio_to_pinned_bound": 1.4286, "utilization": {"h": 0.9}, "p0_wait_s": None,
        "peak_rss_mib": 80.0, "cpu_s": 1.0, "ctx_switches": 10, "closed": 40, "beads": 40,
        "timed_out": False, "gpu_use_while_waiting": 0.93,
        "completion_s": {"n": 40, "mean": 35.5, "p99": 69.0, "max": 70.0},
        "max_wait_by_priority_s": {"p2": 59.3},
    }  # fmt: skip
    console = Console(record=True, width=200)
    print_table({"time_scale": 0.2, "scenarios": {"overflow_20_20": {"celery": run}}}, console)
    text = console.export_text()
    for figure in ("62.2", "0.889", "100.0", "1.429", "93%", "35.5", "69.0", "p2 59"):
        assert figure in text, figure
