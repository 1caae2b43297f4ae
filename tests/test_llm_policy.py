"""The retry policy: backoff, breaker, cloud fallback; real servers on loopback, sleeps recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from yggcelery.breaker import CircuitBreaker, CircuitState, MemoryBreakerState
from yggcelery.cloud import CloudFallback, MemorySpendLedger
from yggcelery.errors import CircuitOpen, HostBusy, HostRejected, HostUnavailable
from yggcelery.llm import (
    AsyncLLMClient,
    Completion,
    LLMClient,
    acomplete_with_fallback,
    backoff_s,
    complete_with_fallback,
)
from yggcelery.llm.fake import FakeModelServer, Reply
from yggcelery.testing.redis import free_port
from yggcelery.settings import RetrySettings, Settings, load_settings

RETRY = RetrySettings(max_retries=3, backoff_s=1.0, backoff_max_s=3.0)
BUSY = Reply(status=503, body={"error": "server busy"})


@pytest.fixture
def host() -> Iterator[FakeModelServer]:
    with FakeModelServer(text="host answer") as server:
        yield server


@pytest.fixture
def cloud() -> Iterator[FakeModelServer]:
    with FakeModelServer(text="cloud answer") as server:
        yield server


def make_settings(host_url: str, cloud_url: str | None = None) -> Settings:
    fields = {"base_url": host_url, "model": "m1", "slots": 1, "kinds": ["text"]}
    return load_settings(hosts={"h1": fields}, cloud={"url": cloud_url})


class Sleeps(list[float]):
    """Records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.append(seconds)


def call(
    settings: Settings, *, breaker: CircuitBreaker | None = None, sleeps: Sleeps | None = None
) -> Completion:
    with LLMClient(settings) as client:
        fallback = CloudFallback(settings.cloud, ledger=MemorySpendLedger(), client=client)
        return complete_with_fallback(
            client,
            fallback,
            "h1",
            "p",
            retry=RETRY,
            breaker=breaker,
            sleep=Sleeps() if sleeps is None else sleeps,
        )


def test_backoff_doubles_and_is_capped() -> None:
    """backoff_s × 2^attempt, never above backoff_max_s."""
    retry = RetrySettings(backoff_s=2.0, backoff_max_s=60.0)
    assert [backoff_s(n, retry) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]


def test_busy_host_is_retried_with_backoff_until_it_answers(
    host: FakeModelServer, cloud: FakeModelServer
) -> None:
    """Two 503s, then an answer: two waits of 1 s and 2 s, three requests, no cloud."""
    host.script(BUSY, BUSY)
    sleeps = Sleeps()
    answer = call(make_settings(host.url, cloud.url), sleeps=sleeps)
    assert (answer.text, answer.via_cloud) == ("host answer", False)
    assert (sleeps, len(host.requests), cloud.requests) == ([1.0, 2.0], 3, [])


def test_busy_past_its_retries_goes_to_the_cloud(
    host: FakeModelServer, cloud: FakeModelServer
) -> None:
    """503 on every try: max_retries+1 requests, capped waits, then the cloud answers."""
    host.script(*[BUSY] * 4)
    sleeps = Sleeps()
    answer = call(make_settings(host.url, cloud.url), sleeps=sleeps)
    assert (answer.text, answer.host, answer.via_cloud) == ("cloud answer", "cloud", True)
    assert (sleeps, len(host.requests), len(cloud.requests)) == ([1.0, 2.0, 3.0], 4, 1)


def test_busy_without_a_cloud_raises_host_busy(host: FakeModelServer) -> None:
    """No cloud configured: the last HostBusy is raised after the tries."""
    host.script(*[BUSY] * 4)
    with pytest.raises(HostBusy, match="HTTP 503"):
        call(make_settings(host.url))
    assert len(host.requests) == 4


def test_a_permanent_error_is_raised_at_once(host: FakeModelServer, cloud: FakeModelServer) -> None:
    """A 404 is not retried and not sent to the cloud; the host counts as alive."""
    breaker = CircuitBreaker(MemoryBreakerState(), failures=2, cooldown_s=60)
    breaker.record_failure("h1")
    host.script(Reply(status=404, body={"error": "model 'm1' not found"}))
    sleeps = Sleeps()
    with pytest.raises(HostRejected, match="HTTP 404"):
        call(make_settings(host.url, cloud.url), breaker=breaker, sleeps=sleeps)
    assert (len(host.requests), cloud.requests, sleeps) == (1, [], [])
    breaker.record_failure("h1")
    assert breaker.state("h1") is CircuitState.CLOSED


def test_an_open_breaker_stops_retries_and_sends_work_to_the_cloud(
    cloud: FakeModelServer,
) -> None:
    """Breaker K=2, host down: two tries, then the cloud; the next call skips the host."""
    settings = make_settings(f"http://127.0.0.1:{free_port()}", cloud.url)
    breaker = CircuitBreaker(MemoryBreakerState(), failures=2, cooldown_s=60)
    sleeps = Sleeps()
    assert call(settings, breaker=breaker, sleeps=sleeps).via_cloud
    assert breaker.state("h1") is CircuitState.OPEN
    assert sleeps == [1.0]
    second = Sleeps()
    assert call(settings, breaker=breaker, sleeps=second).via_cloud
    assert (second, len(cloud.requests)) == ([], 2)


def test_an_open_breaker_without_cloud_raises_circuit_open(host: FakeModelServer) -> None:
    """Breaker open and no cloud: CircuitOpen, and the host gets no request."""
    breaker = CircuitBreaker(MemoryBreakerState(), failures=1, cooldown_s=60)
    breaker.record_failure("h1")
    with pytest.raises(CircuitOpen, match="host h1: circuit open"):
        call(make_settings(host.url), breaker=breaker)
    assert host.requests == []


def test_async_policy_retries_then_falls_back(cloud: FakeModelServer) -> None:
    """acomplete_with_fallback: a down host is tried max_retries+1 times, then the cloud answers."""
    settings = make_settings(f"http://127.0.0.1:{free_port()}", cloud.url)
    sleeps = Sleeps()

    async def run() -> Completion:
        async with AsyncLLMClient(settings) as client:
            fallback = CloudFallback(
                settings.cloud, ledger=MemorySpendLedger(), async_client=client
            )
            return await acomplete_with_fallback(
                client, fallback, "h1", "p", retry=RETRY, sleep=sleeps.asleep
            )

    answer = asyncio.run(run())
    assert (answer.text, answer.via_cloud, sleeps) == ("cloud answer", True, [1.0, 2.0, 3.0])


def test_async_policy_without_cloud_raises_the_host_error() -> None:
    """acomplete_with_fallback with no fallback raises HostUnavailable after its tries."""
    settings = make_settings(f"http://127.0.0.1:{free_port()}")
    sleeps = Sleeps()

    async def run() -> Completion:
        async with AsyncLLMClient(settings) as client:
            return await acomplete_with_fallback(
                client, None, "h1", "p", retry=RETRY, sleep=sleeps.asleep
            )

    with pytest.raises(HostUnavailable, match="host h1: cannot reach"):
        asyncio.run(run())
    assert len(sleeps) == 3
