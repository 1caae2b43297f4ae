"""``ygg doctor``'s checks: real Redis, simulated servers, a real Celery worker in a thread.

A failing check is one line naming the thing, both numbers where there are two, and the fix;
an unreachable host or broker is one failing line and every other check still runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from yggcelery.capacity.check import Check, all_ok
from yggcelery.capacity.doctor import (
    check_beads,
    check_beat,
    check_cloud_key,
    check_hosts,
    check_url,
    run,
)
from yggcelery.capacity.workerchecks import check_workers, worker_checks
from yggcelery.celery_app import make_app
from yggcelery.settings import HostSettings, Settings, load_settings
from yggcelery.sim import SimFleet, SimHostConfig
from yggcelery.testing.redis import RedisServer, free_port, local_sentinel

MODEL = "llama3.1:8b"


@pytest.fixture
def fleet() -> Iterator[SimFleet]:
    """fenrir: Ollama fallen back to 1 (slots 3); skadi: llama.cpp --parallel 4 (slots 2);
    surtr: vLLM whose cache holds exactly its 2 slots."""
    fast = {"model": MODEL, "time_scale": 0.05}
    configs = [
        SimHostConfig(name="fenrir", slots=3, parallel=1, server="ollama", **fast),
        SimHostConfig(name="skadi", slots=2, parallel=4, server="llamacpp", **fast),
        SimHostConfig(name="surtr", slots=2, server="vllm", **fast),
    ]
    with SimFleet(configs) as running:
        yield running


def settings_for(redis: RedisServer, hosts: dict[str, HostSettings], **kw: Any) -> Settings:
    return load_settings(hosts=hosts, broker_url=redis.url(0), result_backend=redis.url(1), **kw)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_a_reachable_redis_passes_and_a_closed_port_fails_in_one_line(
    redis_db: RedisServer,
) -> None:
    """Broker PING answers: ok; nothing on the port: one line with the URL and the setting."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    good, bad = check_url("broker", redis_db.url(0)), check_url("broker", dead, timeout_s=0.5)
    assert good.ok and good.line == f"{redis_db.url(0)} answers"
    assert not bad.ok and bad.line.startswith(f"{dead} does not answer (")
    assert bad.fix == "start it, or fix broker_url (YGG_BROKER_URL)"
    assert "\n" not in str(bad)


def test_parallelism_mismatch_fails_both_ways_naming_host_numbers_and_fix(
    fleet: SimFleet, redis_db: RedisServer
) -> None:
    """Ollama at 1 with slots 3 and llama.cpp at 4 with slots 2 fail; vLLM at 2 with 2 passes."""
    settings = settings_for(redis_db, fleet.host_overrides())
    checks = by_name(check_hosts(settings))
    below, above = checks["parallelism fenrir"], checks["parallelism skadi"]
    assert not below.ok and below.line.startswith(
        "server runs 1 (measured: 1 of 6 concurrent requests ran at once), slots = 3:"
        " 2 of every 3 requests would wait inside the server"
    )
    assert below.fix is not None and below.fix.startswith("set hosts.fenrir.slots = 1")
    assert "OLLAMA_NUM_PARALLEL" in below.fix
    assert (
        not above.ok
        and above.line == "server runs 4 (reported: /slots lists 4), slots = 2: 2 slots idle"
    )
    assert above.fix is not None and "--parallel" in above.fix
    assert checks["parallelism surtr"].ok
    assert [checks[f"server {n}"].ok for n in ("fenrir", "skadi", "surtr")] == [True] * 3


def test_matching_parallelism_and_models_pass(redis_db: RedisServer) -> None:
    """An Ollama really running its 2 slots: server, model and parallelism all pass."""
    config = SimHostConfig(name="fenrir", model=MODEL, slots=2, server="ollama", time_scale=0.05)
    with SimFleet([config]) as running:
        settings = settings_for(redis_db, running.host_overrides())
        checks = check_hosts(settings)
    assert all_ok(checks), [str(c) for c in checks]
    assert by_name(checks)["model fenrir"].line.startswith(f"{MODEL} loaded")


def test_a_missing_model_says_how_to_pull_it(fleet: SimFleet, redis_db: RedisServer) -> None:
    """Ollama without the configured model: model check fails with ``ollama pull``."""
    hosts = {"fenrir": fleet.host_overrides()["fenrir"].model_copy(update={"model": "qwen3:4b"})}
    check = by_name(check_hosts(settings_for(redis_db, hosts)))["model fenrir"]
    assert not check.ok and check.fix is not None and "ollama pull qwen3:4b" in check.fix


def test_one_dead_host_is_one_line_and_the_rest_still_run(
    fleet: SimFleet, redis_db: RedisServer
) -> None:
    """A host on a closed port: one failing server line; the broker, backend and others run."""
    hosts = dict(fleet.host_overrides())
    hosts["ghost"] = hosts["surtr"].model_copy(
        update={"base_url": f"http://127.0.0.1:{free_port()}"}
    )
    checks = run(settings_for(redis_db, hosts), measure=False)
    names = [c.name for c in checks]
    ghost = by_name(checks)["server ghost"]
    assert not ghost.ok and ghost.line.startswith("host ghost: GET http://127.0.0.1:")
    assert "parallelism ghost" not in names
    assert names[:2] == ["broker", "result backend"] and by_name(checks)["broker"].ok
    assert {"server surtr", "parallelism surtr", "cloud fallback"} <= set(names)
    assert not all_ok(checks)


def test_the_cloud_key_must_be_set_when_the_fallback_is_on() -> None:
    """cloud.url set and its key variable empty: fails naming the variable; set: passes."""
    settings = load_settings(cloud={"url": "https://api.example.com/v1"})
    missing = check_cloud_key(settings, environ={})
    present = check_cloud_key(settings, environ={"YGG_CLOUD_API_KEY": "sk-x"})
    assert not missing.ok and "$YGG_CLOUD_API_KEY is not set" in missing.line
    assert present.ok and "sk-x" not in str(present)
    assert check_cloud_key(load_settings(), environ={}).ok


def test_beat_is_alive_when_its_last_pass_is_recent() -> None:
    """A pass 5 s ago with a 10 s period passes; 60 s ago or never fails with what to run."""
    assert check_beat(last_pass_at=95.0, reconcile_every_s=10, now=100.0).ok
    late = check_beat(last_pass_at=40.0, reconcile_every_s=10, now=100.0)
    never = check_beat(last_pass_at=None, reconcile_every_s=10)
    assert not late.ok and late.line == "last reconcile pass 60s ago (every 10s expected)"
    assert not never.ok and never.fix is not None and "ygg beat" in never.fix


def test_the_beads_check_names_the_store() -> None:
    """The Beads check says which store, and its error when it could not be read."""
    assert (
        check_beads(store="jsonl .beads/issues.jsonl").line == "jsonl .beads/issues.jsonl readable"
    )
    bad = check_beads(store="bd", error="bd: command not found")
    assert not bad.ok and bad.line == "bd: bd: command not found"


# -- workers ------------------------------------------------------------------------------------


def hosts_for_workers() -> dict[str, HostSettings]:
    host = HostSettings(base_url="http://127.0.0.1:1", model=MODEL, slots=2, kinds=("text",))
    return {"fenrir": host, "skadi": host.model_copy(update={"slots": 3})}


def test_worker_checks_from_the_workers_answers() -> None:
    """Right queue and concurrency pass; wrong concurrency, extra queue, no worker fail."""
    settings = load_settings(hosts=hosts_for_workers())
    stats = {
        "fenrir@a": {"pool": {"max-concurrency": 2}},
        "skadi@b": {"pool": {"max-concurrency": 1}},
        "control@a": {"pool": {"max-concurrency": 1}},
    }
    queues = {
        "fenrir@a": [{"name": "fenrir"}],
        "skadi@b": [{"name": "skadi"}, {"name": "fenrir"}],
        "control@a": [{"name": "ygg-control"}],
    }
    checks = by_name(worker_checks(settings, stats, queues))
    assert not checks["worker fenrir"].ok  # skadi@b also takes fenrir's queue
    assert (
        checks["worker skadi"].line
        == "skadi@b runs 1 at once, slots = 3; skadi@b also consumes fenrir"
    )
    assert checks["worker control"].ok
    assert (
        by_name(worker_checks(settings, {}, {}))["workers"].line == "no worker answered within 2s"
    )


def test_a_real_worker_is_asked_directly(redis_db: RedisServer) -> None:
    """A Celery worker on fenrir's queue with concurrency 2 answers inspect: its check passes."""
    settings = settings_for(redis_db, hosts_for_workers())
    app = make_app(settings)
    with start_worker(
        app, pool="threads", concurrency=2, queues=["fenrir"], hostname="fenrir@test",
        perform_ping_check=False, without_heartbeat=True,
    ):  # fmt: skip
        checks = by_name(check_workers(app, settings, timeout_s=1.0))
    assert checks["worker fenrir"].ok, checks["worker fenrir"]
    assert checks["worker fenrir"].line == "fenrir@test consumes fenrir with concurrency 2"
    assert not checks["worker skadi"].ok and checks["worker skadi"].fix == "run `ygg worker skadi`"
    assert not checks["worker control"].ok


def test_workers_behind_a_dead_broker_are_one_failing_line() -> None:
    """No broker: the worker check fails once, saying to fix the broker first."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = load_settings(
        hosts=hosts_for_workers(),
        broker_url=dead,
        result_backend=dead,
    )
    app = make_app(settings)
    app.conf.broker_connection_timeout = 0.5
    app.conf.broker_connection_max_retries = 0
    checks = check_workers(app, settings, timeout_s=0.5)
    assert len(checks) == 1 and not checks[0].ok and checks[0].fix == "fix the broker first"


def test_an_unmeasured_ollama_says_its_parallelism_is_unknown(
    fleet: SimFleet, redis_db: RedisServer
) -> None:
    """Without measuring, Ollama's parallelism is unknown: a failing line that says why."""
    checks = by_name(check_hosts(settings_for(redis_db, fleet.host_overrides()), measure=False))
    unknown = checks["parallelism fenrir"]
    assert not unknown.ok
    assert unknown.line == "unknown (ollama does not report it and it was not measured), slots = 3"
    assert unknown.fix is not None and unknown.fix.startswith("measure it")


@pytest.fixture
def sentinel_url(redis_db: RedisServer, tmp_path: Path) -> Iterator[str]:
    """One real Sentinel (redis-server --sentinel) watching ``redis_db`` as ``ygg-primary``."""
    with local_sentinel(redis_db, master="ygg-primary", data_dir=tmp_path) as url:
        yield url


def test_a_sentinel_url_is_checked_through_the_sentinels(sentinel_url: str) -> None:
    """sentinel:// is asked for the primary by name and PINGs it; a name the Sentinel does not
    know is one failing line with the URL."""
    good = check_url("broker", sentinel_url, master="ygg-primary")
    assert good.ok, good
    bad = check_url("broker", sentinel_url, master="no-such-primary", timeout_s=1.0)
    assert not bad.ok and bad.line.startswith(f"{sentinel_url} does not answer ("), bad
