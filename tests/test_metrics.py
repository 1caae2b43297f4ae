"""The dispatcher's /metrics: scraped over HTTP from a real Redis, workers and simulated hosts."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_cluster_e2e import run_until_idle
from yggcelery.beads import JsonlStore
from yggcelery.connections import redis_for
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.exporter.durations import DURATION_KEY, observe_results
from yggcelery.exporter.server import MetricsServer, start_metrics_server
from yggcelery.llm.cloud import RedisSpendLedger
from yggcelery.outcomes import BeadResult
from yggcelery.reconcile import ReconcileReport
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.redis import free_port
from yggcelery.testing.seed import seed_issues
from yggcelery.testing.waiting import wait_until

HOSTS = {"surtr-reasoning": 2, "fenrir-chat": 3, "skadi-code": 2}
KIND = {"surtr-reasoning": "reasoning", "fenrir-chat": "text", "skadi-code": "code"}
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(server: MetricsServer) -> Samples:
    """Every sample of one scrape: sample name -> sorted labels -> value."""
    response = httpx.get(server.url, timeout=30)
    response.raise_for_status()
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def by_host(samples: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["host"]: value for labels, value in samples[name].items()}


def hold_slot(url: str, model: str) -> threading.Thread:
    """A model request that keeps one slot busy until the simulator stops."""

    def call() -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "hold"}], "stream": False}
        headers = {"X-Ygg-Service-S": "1000000"}
        with contextlib.suppress(httpx.HTTPError):  # the simulator stops under it: it ends so
            httpx.post(f"{url}/api/chat", json=body, headers=headers, timeout=120)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def served(make_settings: Callable[..., Settings]) -> Iterator[Callable[[Settings], MetricsServer]]:
    servers: list[MetricsServer] = []

    def start(settings: Settings) -> MetricsServer:
        server = start_metrics_server(settings, port=free_port())
        assert server is not None
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_every_metric_is_served_with_its_labels_and_plausible_values(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    served: Callable[[Settings], MetricsServer],
) -> None:
    """After 9 tasks, with one worker stopped, one host down and one slot held: every series."""
    fleet = sim_fleet(time_scale=0.02)
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    seed_issues(store, count=9, dependency_every=0)
    cluster = local_cluster(settings)
    client = redis_for(settings)

    def record(report: ReconcileReport) -> None:  # as `ygg loop` records what it closed
        observe_results(client, report.closed)

    run_until_idle(CeleryDispatcher(settings, store, after_reconcile=record))

    seed_issues(store, count=4, dependency_every=0, seed=7)  # ready, never dispatched
    cluster.kill_worker("skadi-code")
    for _ in range(3):
        cluster.app.send_task("yggcelery.noop", queue="skadi-code", priority=1)
    RedisSpendLedger(client).add(1.25)
    fleet["surtr-reasoning"].down()
    fenrir = fleet["fenrir-chat"]
    hold_slot(fenrir.url, fenrir.config.model)
    wait_until(lambda: fenrir.status()["busy_slots"] == 1, timeout_s=20, what="fenrir's slot held")

    server = served(settings)
    scrape(server)  # the first scrape sets the GPU baseline
    samples = scrape(server)

    depth = {
        (dict(k)["host"], dict(k)["priority"]): v for k, v in samples["ygg_queue_depth"].items()
    }
    assert set(depth) == {(h, str(p)) for h in HOSTS for p in range(5)}
    assert depth["skadi-code", "1"] == 3
    assert sum(depth.values()) == 3

    busy, free = by_host(samples, "ygg_slots_busy"), by_host(samples, "ygg_slots_free")
    assert {h: busy[h] + free[h] for h in HOSTS} == HOSTS
    assert by_host(samples, "ygg_worker_online") == {
        "surtr-reasoning": 1, "fenrir-chat": 1, "skadi-code": 0,
    }  # fmt: skip
    assert by_host(samples, "ygg_host_up") == {
        "surtr-reasoning": 0, "fenrir-chat": 1, "skadi-code": 1,
    }  # fmt: skip

    ready = {dict(k)["priority"]: v for k, v in samples["ygg_beads_ready"].items()}
    assert set(ready) == {"0", "1", "2", "3", "4"}
    assert sum(ready.values()) == 4

    gpu = by_host(samples, "ygg_gpu_utilization")
    assert set(gpu) == {"fenrir-chat", "skadi-code"}, "a host that is down has no GPU figure"
    assert gpu["fenrir-chat"] == pytest.approx(1 / 3, abs=0.05)  # one slot of three held
    assert gpu["skadi-code"] == 0

    assert samples["ygg_cloud_spend_usd_today"] == {(): 1.25}

    counts = {
        tuple(sorted(dict(k).items())): v
        for k, v in samples["ygg_task_duration_seconds_count"].items()
    }
    assert counts == {(("host", h), ("kind", KIND[h])): 3 for h in HOSTS}
    for labels, value in samples["ygg_task_duration_seconds_sum"].items():
        assert 0 < value < 60, labels
    inf = {
        k: v for k, v in samples["ygg_task_duration_seconds_bucket"].items() if ("le", "+Inf") in k
    }
    assert sorted(inf.values()) == [3, 3, 3]


def test_duration_histogram_buckets_are_cumulative(
    make_settings: Callable[..., Settings], served: Callable[[Settings], MetricsServer]
) -> None:
    """Results of 0.5 s, 1 s (on a bound: counted in it), 7 s and 2000 s, written in one pass
    and in another, land in the right cumulative buckets."""
    settings = make_settings()
    client = redis_for(settings)
    results = [BeadResult(bead="bd-1", task_id="t", kind="code", host="skadi-code", model="m",
                          text="ok", total_s=seconds) for seconds in (0.5, 1.0, 7.0)]  # fmt: skip
    observe_results(client, results)
    observe_results(client, [replace(results[0], total_s=2000.0)])
    samples = scrape(served(settings))
    buckets = {dict(k)["le"]: v for k, v in samples["ygg_task_duration_seconds_bucket"].items()}
    assert (buckets["1.0"], buckets["5.0"], buckets["10.0"], buckets["900.0"]) == (2, 2, 3, 3)
    assert buckets["+Inf"] == 4
    assert samples["ygg_task_duration_seconds_sum"] == {
        (("host", "skadi-code"), ("kind", "code")): 2008.5
    }


def test_a_pass_of_results_counts_as_each_result_observed_alone(
    make_settings: Callable[..., Settings],
) -> None:
    """A reconcile pass adds its results in one transaction, summed per field: the stored
    histogram is the same as observing them one by one."""
    settings = make_settings()
    client = redis_for(settings)
    base = BeadResult(bead="bd-1", task_id="t", kind="code", host="skadi-code", model="m",
                      text="ok", total_s=0.5)  # fmt: skip
    results = [
        base,
        replace(base, total_s=7.0),
        replace(base, kind="text", host="fenrir-chat", total_s=42.0),
        replace(base, total_s=3.0, via_cloud=True),
    ]
    observe_results(client, results)
    together = client.hgetall(DURATION_KEY)
    client.delete(DURATION_KEY)
    for r in results:
        observe_results(client, [r])
    assert client.hgetall(DURATION_KEY) == together
    assert together[b"skadi-code\tcode\tcount"] == b"2"


def test_metrics_port_zero_disables_the_endpoint(make_settings: Callable[..., Settings]) -> None:
    """metrics_port = 0: no server is started."""
    assert start_metrics_server(make_settings(metrics_port=0)) is None
