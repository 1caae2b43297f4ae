"""The work path (work/perform.py): retries in place, the breaker, the cloud fallback, the prompt
cut to the target's limit; real model servers on loopback, sleeps recorded instead of slept."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import pytest

from yggcelery.errors import CircuitOpen, HostBusy, HostRejected, HostUnavailable
from yggcelery.llm.breaker import CircuitBreaker, CircuitState, MemoryBreakerState
from yggcelery.llm.client import AsyncLLMClient, LLMClient
from yggcelery.llm.cloud import CloudFallback, MemorySpendLedger
from yggcelery.llm.fake import FakeModelServer, Reply
from yggcelery.outcomes import BeadResult
from yggcelery.routing import CLOUD_QUEUE
from yggcelery.settings import Settings, load_settings
from yggcelery.testing.redis import free_port
from yggcelery.work.order import WorkOrder
from yggcelery.work.perform import aperform, perform
from yggcelery.work.resources import AsyncResources, Resources, breaker_for

RETRY = {"max_retries": 3, "backoff_s": 1.0, "backoff_max_s": 3.0, "breaker_failures": 5,
         "breaker_cooldown_s": 60.0}  # fmt: skip
BUSY = Reply(status=503, body={"error": "server busy"})
BEAD = {"id": "bd-1", "title": "Summarise", "description": "The meeting notes.", "design": "",
        "acceptance_criteria": "", "issue_type": "task"}  # fmt: skip


@pytest.fixture
def host() -> Iterator[FakeModelServer]:
    with FakeModelServer(text="host answer") as server:
        yield server


@pytest.fixture
def cloud() -> Iterator[FakeModelServer]:
    with FakeModelServer(text="cloud answer") as server:
        yield server


def make_settings(
    host_url: str, cloud_url: str | None = None, *, host_chars: int = 24_000, **retry: float
) -> Settings:
    fields = {"base_url": host_url, "model": "m1", "slots": 1, "kinds": ["text"],
              "max_prompt_chars": host_chars}  # fmt: skip
    cloud = {"url": cloud_url, "max_prompt_chars": 40_000}
    return load_settings(hosts={"h1": fields}, cloud=cloud, retry={**RETRY, **retry})


def order(host: str = "h1", bead: dict[str, str] | None = None) -> WorkOrder:
    return WorkOrder(bead=bead or BEAD, kind="text", host=host, priority=2, attempt=1,
                     task_id="ygg:bd-1:1")  # fmt: skip


class Sleeps(list[float]):
    """Records the waits instead of sleeping (and can move a breaker's clock by them)."""

    def __init__(self, clock: list[float] | None = None) -> None:
        super().__init__()
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if self.clock is not None:
            self.clock[0] += seconds

    async def asleep(self, seconds: float) -> None:
        self(seconds)


def run(
    settings: Settings,
    work: WorkOrder | None = None,
    *,
    breaker: CircuitBreaker | None = None,
    sleeps: Sleeps | None = None,
) -> BeadResult:
    """:func:`perform` with in-memory breaker and budget, and recorded sleeps."""
    with LLMClient(settings) as client:
        fallback = CloudFallback(settings.cloud, ledger=MemorySpendLedger(), client=client)
        breaker = breaker or breaker_for(settings, MemoryBreakerState())
        res = Resources(settings, client, breaker, fallback)
        return perform(work or order(), res, sleep=Sleeps() if sleeps is None else sleeps)


def arun(settings: Settings, sleeps: Sleeps) -> BeadResult:
    """:func:`aperform` on a fresh event loop."""

    async def go() -> BeadResult:
        async with AsyncLLMClient(settings) as client:
            fallback = CloudFallback(
                settings.cloud, ledger=MemorySpendLedger(), async_client=client
            )
            breaker = breaker_for(settings, MemoryBreakerState())
            res = AsyncResources(settings, client, breaker, fallback)
            return await aperform(order(), res, sleep=sleeps.asleep)

    return asyncio.run(go())


def test_a_busy_host_is_retried_with_backoff_until_it_answers(
    host: FakeModelServer, cloud: FakeModelServer
) -> None:
    """Two 503s, then an answer: waits of 1 s and 2 s, three requests, no cloud."""
    host.script(BUSY, BUSY)
    sleeps = Sleeps()
    result = run(make_settings(host.url, cloud.url), sleeps=sleeps)
    assert (result.text, result.host, result.via_cloud) == ("host answer", "h1", False)
    assert (sleeps, len(host.requests), cloud.requests) == ([1.0, 2.0], 3, [])


def test_a_host_busy_past_its_retries_sends_the_work_to_the_cloud(
    host: FakeModelServer, cloud: FakeModelServer
) -> None:
    """503 on every try: max_retries+1 requests, capped waits, then the cloud answers."""
    host.script(*[BUSY] * 4)
    sleeps = Sleeps()
    result = run(make_settings(host.url, cloud.url), sleeps=sleeps)
    assert (result.text, result.host, result.via_cloud) == ("cloud answer", "cloud", True)
    assert (sleeps, len(host.requests), len(cloud.requests)) == ([1.0, 2.0, 3.0], 4, 1)
    assert result.comment().count("via cloud") == 1


def test_a_host_busy_past_its_retries_without_a_cloud_ends_the_attempt(
    host: FakeModelServer,
) -> None:
    """No cloud configured: the last HostBusy is raised after max_retries+1 tries."""
    host.script(*[BUSY] * 4)
    with pytest.raises(HostBusy, match="HTTP 503"):
        run(make_settings(host.url))
    assert len(host.requests) == 4


def test_a_rejected_request_is_raised_at_once_and_the_host_counts_as_alive(
    host: FakeModelServer, cloud: FakeModelServer
) -> None:
    """A 400 is not retried and not sent to the cloud; the host's failure count is reset."""
    settings = make_settings(host.url, cloud.url, breaker_failures=2)
    breaker = breaker_for(settings, MemoryBreakerState())
    breaker.record_failure("h1")
    host.script(Reply(status=400, body={"error": "invalid request"}))
    sleeps = Sleeps()
    with pytest.raises(HostRejected, match="HTTP 400"):
        run(settings, breaker=breaker, sleeps=sleeps)
    assert (len(host.requests), cloud.requests, sleeps) == (1, [], [])
    breaker.record_failure("h1")
    assert breaker.state("h1") is CircuitState.CLOSED


def test_a_failure_that_opens_the_circuit_sends_the_work_to_the_cloud_at_once(
    cloud: FakeModelServer,
) -> None:
    """Breaker K=2, host down: the second failure opens it and the cloud answers with no
    further wait; the next order skips the host altogether."""
    settings = make_settings(f"http://127.0.0.1:{free_port()}", cloud.url, breaker_failures=2)
    breaker = breaker_for(settings, MemoryBreakerState())
    sleeps = Sleeps()
    assert run(settings, breaker=breaker, sleeps=sleeps).via_cloud
    assert breaker.state("h1") is CircuitState.OPEN
    assert sleeps == [1.0]
    second = Sleeps()
    assert run(settings, breaker=breaker, sleeps=second).via_cloud
    assert (second, len(cloud.requests)) == ([], 2)


def test_an_open_circuit_without_a_cloud_waits_its_cooldown_then_probes(
    host: FakeModelServer,
) -> None:
    """Circuit open, no cloud: the try waits the breaker's cooldown (not the backoff), and the
    probe after it reaches the host and closes the circuit."""
    settings = make_settings(host.url, breaker_failures=1)
    clock = [1000.0]
    breaker = CircuitBreaker(MemoryBreakerState(), failures=1, cooldown_s=60.0,
                             clock=lambda: clock[0])  # fmt: skip
    breaker.record_failure("h1")
    sleeps = Sleeps(clock)
    result = run(settings, breaker=breaker, sleeps=sleeps)
    assert (result.host, sleeps, len(host.requests)) == ("h1", [60.0], 1)
    assert breaker.state("h1") is CircuitState.CLOSED


def test_an_open_circuit_that_stays_open_ends_the_attempt_with_circuit_open(
    host: FakeModelServer,
) -> None:
    """Circuit open for good, no cloud: every try waits the cooldown, the host gets nothing,
    and CircuitOpen (transient) ends the attempt."""
    settings = make_settings(host.url, breaker_failures=1)
    breaker = CircuitBreaker(MemoryBreakerState(), failures=1, cooldown_s=60.0, clock=lambda: 0)
    breaker.record_failure("h1")
    sleeps = Sleeps()
    with pytest.raises(CircuitOpen, match="host h1: circuit open"):
        run(settings, breaker=breaker, sleeps=sleeps)
    assert (sleeps, host.requests) == ([60.0, 60.0, 60.0], [])


def test_an_order_routed_to_the_cloud_runs_there_without_touching_a_host(
    host: FakeModelServer, cloud: FakeModelServer
) -> None:
    """An order for the cloud queue goes straight to the cloud endpoint."""
    result = run(make_settings(host.url, cloud.url), order(CLOUD_QUEUE))
    assert (result.host, result.via_cloud, host.requests) == ("cloud", True, [])
    assert cloud.requests[0].headers["X-Ygg-Bead"] == "bd-1"


def test_the_prompt_is_cut_once_to_the_limit_of_the_target_that_runs_it(
    host: FakeModelServer, cloud: FakeModelServer
) -> None:
    """A 50,000-character issue: the host gets it cut to its 24,000, the cloud fallback to
    its own 40,000 (not the host's), each with one note; the footer names the cloud's cut."""
    host.script(*[BUSY] * 4)
    long = {**BEAD, "description": "x" * 50_000}
    result = run(make_settings(host.url, cloud.url), order(bead=long))
    to_host = host.requests[0].body["messages"][0]["content"]
    to_cloud = cloud.requests[0].body["messages"][0]["content"]
    assert (len(to_host), len(to_cloud)) == (24_000, 40_000)
    assert to_host.count("[truncated:") == to_cloud.count("[truncated:") == 1
    assert result.prompt_truncated and result.via_cloud
    assert "to 40,000 characters for cloud (max_prompt_chars 40,000)" in result.prompt_cut
    assert result.prompt_cut in result.comment()


def test_aperform_retries_a_down_host_then_falls_back_to_the_cloud(
    cloud: FakeModelServer,
) -> None:
    """aperform: a down host is tried max_retries+1 times with backoff, then the cloud answers."""
    sleeps = Sleeps()
    result = arun(make_settings(f"http://127.0.0.1:{free_port()}", cloud.url), sleeps)
    assert (result.text, result.via_cloud, sleeps) == ("cloud answer", True, [1.0, 2.0, 3.0])


def test_aperform_without_a_cloud_raises_the_host_error_after_its_tries() -> None:
    """aperform with no fallback raises HostUnavailable after max_retries+1 tries."""
    sleeps = Sleeps()
    with pytest.raises(HostUnavailable, match="host h1: cannot reach"):
        arun(make_settings(f"http://127.0.0.1:{free_port()}"), sleeps)
    assert sleeps == [1.0, 2.0, 3.0]


def test_aperform_and_perform_give_the_same_result(host: FakeModelServer) -> None:
    """The asyncio path returns the same BeadResult as the threaded one (but for timing)."""
    settings = make_settings(host.url)
    threaded, on_loop = run(settings), arun(settings, Sleeps())
    assert replace(on_loop, total_s=threaded.total_s) == threaded
