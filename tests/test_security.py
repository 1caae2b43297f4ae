"""Security: JSON-only workers, Redis passwords end to end, and no secret in any output.

TLS (``rediss://``) is accepted by settings and passed to Celery as is; it is not exercised
against a TLS Redis here (see RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection, Exchange

from yggcelery.beads import JsonlStore
from yggcelery.celery_app import celery_config
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.settings import Settings, load_settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread, audit, requests_by_bead
from yggcelery.testing.redis import RedisServer
from yggcelery.testing.seed import seed_issues
from yggcelery.testing.waiting import wait_until

HOST = "skadi-code"
#: Fake secrets the test looks for everywhere.
REDIS_SECRET = "redis-pw-Zq81kT0xVv"
CLOUD_SECRET = "sk-cloud-Hh37Lw0pQe"
FLOWER_SECRET = "flower-pw-Ub52Yr9mNc"
SECRETS = (REDIS_SECRET, CLOUD_SECRET, FLOWER_SECRET)


class Exploit:
    """Unpickling this creates a directory: proof that pickle content was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def publish_pickle(settings: Settings, marker: Path) -> None:
    """A run_bead message in Celery's protocol 2, serialized with pickle, on the host queue."""
    body = ([Exploit(marker)], {}, {"callbacks": None, "errbacks": None, "chain": None})
    headers = {"lang": "py", "task": "yggcelery.run_bead", "id": "evil-1", "retries": 0,
               "root_id": "evil-1", "parent_id": None, "group": None}  # fmt: skip
    options = celery_config(settings)["broker_transport_options"]
    with Connection(settings.broker_url, transport_options=options) as conn:
        conn.Producer().publish(
            body, exchange=Exchange(HOST, type="direct"), routing_key=HOST,
            serializer="pickle", headers=headers, priority=0,
        )  # fmt: skip


def test_worker_refuses_a_pickled_message_and_runs_nothing(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    tmp_path: Path,
) -> None:
    """A pickled task on a host queue is refused unopened; the next (JSON) task runs normally."""
    fleet = sim_fleet(time_scale=0.05)
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    local_cluster(settings, hosts=[HOST])
    marker = tmp_path / "pwned"

    publish_pickle(settings, marker)
    honest = store.create("after the bad one", issue_type="bug", actor="me")
    with DispatcherThread(CeleryDispatcher(settings, store)) as loop:
        assert loop.wait(timeout_s=120)

    assert not marker.exists()
    assert audit(store).statuses == {"closed": 1}
    assert requests_by_bead(fleet, status=None) == {honest.id: 1}
    log = (tmp_path / "logs" / f"{HOST}.log").read_text()
    assert "ContentDisallowed" in log or "Refusing to deserialize" in log


def test_celery_accepts_json_only() -> None:
    """Task, result and event serializers are JSON, and nothing else is accepted."""
    config = celery_config(load_settings())
    assert config["accept_content"] == ["json"] == config["result_accept_content"]
    assert {config["task_serializer"], config["result_serializer"]} == {"json"}


def test_rediss_urls_are_accepted_and_reach_celery_unchanged() -> None:
    """A TLS broker and backend (rediss://) pass validation and are what Celery gets."""
    url = "rediss://:pw@redis.example:6380/0?ssl_cert_reqs=required"
    settings = load_settings(broker_url=url, result_backend=url.replace("/0", "/1"))
    assert settings.broker_kind == "redis"
    config = celery_config(settings)
    assert config["broker_url"] == url
    assert "priority_steps" in config["broker_transport_options"]


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(password=REDIS_SECRET, data_dir=tmp_path) as server:
        yield server


def test_whole_cluster_with_passwords_and_cloud_key_leaks_no_secret(  # noqa: PLR0917 (fixtures)
    password_redis: RedisServer,
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis password, cloud API key and Flower password set; workers, cloud worker, beat and
    the dispatcher run 12 issues (skadi down, so code work goes to the cloud): every log, the
    Beads file, the broker and the result backend are free of all three secrets."""
    caplog.set_level("DEBUG")
    monkeypatch.setenv("YGG_CLOUD_API_KEY", CLOUD_SECRET)
    fleet = sim_fleet(time_scale=0.05)
    settings = make_settings(
        fleet=fleet, broker_url=password_redis.url(0), result_backend=password_redis.url(1),
        cloud={"url": fleet["fenrir-chat"].url, "model": fleet["fenrir-chat"].config.model},
        flower={"password": FLOWER_SECRET},
    )  # fmt: skip
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=password_redis.port, password="wrong").ping()
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    seed_issues(store, count=12, dependency_every=0, service_s=5.0)
    fleet[HOST].down()
    logs = tmp_path / "logs"
    cluster = LocalCluster(settings, log_dir=logs, hosts=[*settings.hosts, "cloud"], beat=True)
    with cluster:
        cluster.wait_online()
        with DispatcherThread(CeleryDispatcher(settings, store)) as loop:
            assert loop.wait(timeout_s=180)
        done = reconciles_run(logs)  # then beat's next reconcile, so its log lines are in too
        wait_until(lambda: reconciles_run(logs) > done, timeout_s=60,
                   what="a reconcile run by beat after the dispatcher finished")  # fmt: skip

    report = audit(store)
    assert report.ok and report.statuses == {"closed": 12}, report.problems
    cloud_done = [i for i in store.list_issues() if "cloud fallback" in (i.close_reason or "")]
    assert cloud_done  # the key was used
    outputs = {str(p): p.read_text(errors="replace") for p in logs.iterdir() if p.is_file()}
    outputs["beads"] = settings.beads.jsonl_path.read_text()
    outputs["redis"] = dump_redis(password_redis)
    captured = capfd.readouterr()
    outputs["stdout"], outputs["stderr"] = captured.out, captured.err
    outputs["log records"] = "\n".join(r.getMessage() for r in caplog.records)
    assert len(outputs["redis"]) > 1000 and len(outputs[str(logs / "cloud.log")]) > 0
    leaks = [(where, s) for where, text in outputs.items() for s in SECRETS if s in text]
    assert leaks == []


def reconciles_run(logs: Path) -> int:
    """Reconcile tasks the control worker has logged as finished."""
    text = (logs / "control.log").read_text(errors="replace")
    return sum("Task yggcelery.reconcile[" in line and " succeeded in " in line
               for line in text.splitlines())  # fmt: skip


def dump_redis(server: RedisServer) -> str:
    """Every key and value of the broker and backend databases, as text."""
    out = []
    for db in (0, 1):
        client = redis.Redis.from_url(server.url(db))
        for key in client.scan_iter():
            out.append(f"{key!r} {_value(client, key)!r}")
    return json.dumps(out)


def _value(client: redis.Redis, key: bytes) -> object:
    kind = client.type(key).decode()
    if kind == "string":
        return client.get(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "set":
        return client.smembers(key)
    return client.zrange(key, 0, -1) if kind == "zset" else b""
