"""The cloud fallback: spend ledgers (memory, real Redis), the daily budget, and the API key."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator

import pytest
import redis

from yggcelery.errors import CloudBudgetExceeded, HostRejected, HostUnavailable, YggError
from yggcelery.llm import LLMClient, build_request
from yggcelery.llm.breaker import MemoryBreakerState
from yggcelery.llm.cloud import CloudFallback, MemorySpendLedger, RedisSpendLedger, SpendLedger
from yggcelery.llm.fake import COMPLETION_TOKENS, PROMPT_TOKENS, FakeModelServer, Reply
from yggcelery.outcomes import BeadResult
from yggcelery.settings import Settings, load_settings
from yggcelery.testing.redis import RedisServer, free_port
from yggcelery.work.order import WorkOrder
from yggcelery.work.perform import perform
from yggcelery.work.resources import Resources, breaker_for

KEY = "sk-test-SECRET-123"
KEY_ENV = "YGG_TEST_CLOUD_KEY"
PRICE = 0.002
ONE_ANSWER_USD = (PROMPT_TOKENS + COMPLETION_TOKENS) / 1000 * PRICE
NO_WAIT = {"max_retries": 1, "backoff_s": 0}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def rconn(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_server.url(0)) as conn:
        yield conn
        conn.flushdb()


@pytest.fixture
def cloud() -> Iterator[FakeModelServer]:
    with FakeModelServer(text="cloud says Paris") as server:
        yield server


@pytest.fixture(autouse=True)
def cloud_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def make_settings(cloud_url: str | None, *, host_url: str | None = None) -> Settings:
    """One host ``h1`` (down unless ``host_url``) and the cloud at ``cloud_url``."""
    host = {
        "base_url": host_url or f"http://127.0.0.1:{free_port()}",
        "model": "m1",
        "slots": 1,
        "kinds": ["text"],
    }
    cloud = {"url": cloud_url, "model": "cloud-m", "api_key_env": KEY_ENV,
             "price_per_1k_tokens_usd": PRICE, "daily_budget_usd": 5.0}  # fmt: skip
    return load_settings(hosts={"h1": host}, cloud=cloud, retry=NO_WAIT)


def order(bead: str = "bd-1") -> WorkOrder:
    fields = {"id": bead, "title": "a prompt", "description": "", "design": "",
              "acceptance_criteria": "", "issue_type": "task"}  # fmt: skip
    return WorkOrder(bead=fields, kind="text", host="h1", priority=2, attempt=1,
                     task_id=f"ygg:{bead}:1")  # fmt: skip


def run(settings: Settings, ledger: SpendLedger, *, bead: str = "bd-1") -> BeadResult | YggError:
    """:func:`perform` of bead ``bead`` on h1 with the settings' cloud; the result or the error
    that ended the attempt."""
    with LLMClient(settings) as client:
        fallback = CloudFallback(settings.cloud, ledger=ledger, client=client)
        res = Resources(settings, client, breaker_for(settings, MemoryBreakerState()), fallback)
        try:
            return perform(order(bead), res, sleep=lambda _: None)
        except YggError as exc:
            return exc


def test_memory_ledger_adds_up_per_utc_day() -> None:
    """Spend accumulates within a day and starts again at zero the next day."""
    day = [dt.date(2026, 11, 28)]
    ledger = MemorySpendLedger(today=lambda: day[0])
    assert ledger.add(1.25) == 1.25 and ledger.add(0.5) == 1.75
    day[0] = dt.date(2026, 11, 29)
    assert ledger.spent_today() == 0.0


def test_redis_ledger_keys_by_utc_date_and_expires(rconn: redis.Redis) -> None:
    """The Redis ledger keeps one key per UTC date, shared by instances, expiring in 2 days."""
    day = dt.date(2026, 11, 28)
    one = RedisSpendLedger(rconn, today=lambda: day)
    two = RedisSpendLedger(rconn, today=lambda: day)
    one.add(0.25)
    assert two.add(0.5) == pytest.approx(0.75) and one.spent_today() == pytest.approx(0.75)
    assert rconn.keys("*") == [b"ygg:cloud:spend:2026-11-28"]
    assert 0 < rconn.ttl("ygg:cloud:spend:2026-11-28") <= 2 * 24 * 3600


def test_host_down_falls_back_and_the_cost_is_counted(
    cloud: FakeModelServer, rconn: redis.Redis
) -> None:
    """Host refuses connections: the cloud answers, and its cost lands in the Redis ledger."""
    ledger = RedisSpendLedger(rconn)
    answer = run(make_settings(cloud.url), ledger, bead="bd-1")
    assert isinstance(answer, BeadResult), answer
    assert (answer.text, answer.host, answer.via_cloud) == ("cloud says Paris", "cloud", True)
    assert answer.cost_usd == pytest.approx(ONE_ANSWER_USD)
    assert ledger.spent_today() == pytest.approx(ONE_ANSWER_USD)
    sent = cloud.requests[0]
    assert (sent.path, sent.body["model"]) == ("/v1/chat/completions", "cloud-m")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["X-Ygg-Bead"] == "bd-1"


def test_budget_spent_means_no_fallback_one_warning_and_a_transient_error(
    cloud: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Over budget: the cloud is not called, one WARNING says why, the host error is raised."""
    ledger = MemorySpendLedger()
    ledger.add(5.02)
    with caplog.at_level(logging.WARNING):
        error = run(make_settings(cloud.url), ledger, bead="bd-x")
    assert isinstance(error, HostUnavailable) and error.host == "h1"
    assert isinstance(error.__cause__, CloudBudgetExceeded)
    assert cloud.requests == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["cloud fallback skipped for bd-x: daily budget $5.00 spent ($5.02 today)"]
    assert ledger.spent_today() == 5.02


def test_no_cloud_configured_raises_the_host_error(cloud: FakeModelServer) -> None:
    """Without cloud.url the fallback is disabled and the host's transient error is raised."""
    error = run(make_settings(None), MemorySpendLedger())
    assert isinstance(error, HostUnavailable) and error.host == "h1"
    assert cloud.requests == []


def test_a_failing_cloud_leaves_the_task_transient(
    cloud: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The cloud rejects the request too: the host's error is raised, the cloud's is logged."""
    cloud.script(Reply(status=401, body={"error": {"message": "invalid key"}}))
    ledger = MemorySpendLedger()
    with caplog.at_level(logging.WARNING):
        error = run(make_settings(cloud.url), ledger)
    assert isinstance(error, HostUnavailable) and isinstance(error.__cause__, HostRejected)
    assert "host cloud: HTTP 401" in caplog.text and ledger.spent_today() == 0.0


def test_the_api_key_appears_in_no_log_result_error_or_repr(
    cloud: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With every log captured at DEBUG, the key is sent to the cloud and shown nowhere else."""
    settings = make_settings(cloud.url)
    ledger = MemorySpendLedger()
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG), LLMClient(settings) as client:
        fallback = CloudFallback(settings.cloud, ledger=ledger, client=client)
        res = Resources(settings, client, breaker_for(settings, MemoryBreakerState()), fallback)
        answer = perform(order(), res, sleep=lambda _: None)
        seen += [json.dumps(answer.to_dict()), repr(answer), repr(fallback), repr(client)]
        seen += [answer.comment(), answer.close_reason()]
        seen += [repr(settings), repr(settings.cloud), repr(fallback.host)]
        seen += [repr(build_request("cloud", fallback.host, "p")), repr(ledger)]
        cloud.script(Reply(status=401, body={"error": f"Incorrect API key provided: {KEY}"}))
        with pytest.raises(HostRejected) as caught:
            fallback.complete("p")
        seen += [str(caught.value), repr(caught.value), str(caught.value.__cause__)]
        ledger.add(10)
        with pytest.raises(CloudBudgetExceeded) as over:
            fallback.complete("p")
        seen += [str(over.value), repr(over.value)]
    assert cloud.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    assert "***" in str(caught.value)
    seen += [caplog.text] + [repr(r.__dict__) for r in caplog.records]
    assert len(caplog.records) > 3
    leaks = [text for text in seen if KEY in text or "SECRET" in text]
    assert leaks == []
