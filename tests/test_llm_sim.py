"""The model client against the simulator (SimFleet): real Ollama/OpenAI-shaped HTTP servers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from yggcelery.errors import HostBusy, HostRejected, HostUnavailable, TransientError
from yggcelery.llm import Completion, LLMClient, TaskTags
from yggcelery.llm.breaker import MemoryBreakerState
from yggcelery.llm.client import AsyncLLMClient
from yggcelery.llm.cloud import CloudFallback, MemorySpendLedger
from yggcelery.settings import Dialect, Settings, load_settings
from yggcelery.sim import SimFleet, SimHostConfig
from yggcelery.testing.redis import free_port
from yggcelery.testing.waiting import wait_until
from yggcelery.work.order import WorkOrder
from yggcelery.work.perform import perform
from yggcelery.work.resources import Resources, breaker_for

PROMPT = "What is the capital of France?"
SCALE = 0.01  # a simulated second lasts 10 ms


def config(name: str, model: str, dialect: Dialect) -> SimHostConfig:
    """One simulated host with a single slot and no queue, so a second request gets 503."""
    return SimHostConfig(
        name=name, model=model, slots=1, max_queue=0, time_scale=SCALE, dialect=dialect
    )


@pytest.fixture(scope="module")
def fleet() -> Iterator[SimFleet]:
    hosts = [config("olla", "llama3.1:8b", "ollama"), config("oai", "qwen2.5:7b", "openai")]
    with SimFleet(hosts) as running:
        yield running


@pytest.fixture
def settings(fleet: SimFleet) -> Settings:
    for host in fleet:
        host.reset()
    return load_settings(hosts=fleet.host_overrides())


@pytest.fixture
def client(settings: Settings) -> Iterator[LLMClient]:
    with LLMClient(settings) as llm:
        yield llm


def test_ollama_dialect_returns_text_tokens_and_timings(client: LLMClient, fleet: SimFleet) -> None:
    """The sim's Ollama answer gives text, token counts and the three timings."""
    tags = TaskTags(bead="bd-3", priority=1, kind="code")
    answer = client.complete("olla", PROMPT, max_tokens=20, tags=tags)
    assert answer.text.startswith("[llama3.1:8b] simulated answer to: What is the capital")
    assert answer.prompt_tokens and answer.completion_tokens == 20
    assert None not in (answer.load_s, answer.prompt_eval_s, answer.eval_s)
    assert answer.eval_s and answer.eval_s > 0
    (record,) = fleet["olla"].records()
    assert (record["bead"], record["priority"], record["kind"]) == ("bd-3", 1, "code")


def test_openai_dialect_returns_text_and_tokens(client: LLMClient, fleet: SimFleet) -> None:
    """The sim's OpenAI answer gives text and usage; the service time header is honoured."""
    answer = client.complete("oai", PROMPT, max_tokens=12, tags=TaskTags(service_s=3.0))
    assert answer.text.startswith("[qwen2.5:7b] simulated answer to:")
    assert answer.prompt_tokens and answer.completion_tokens == 12
    assert fleet["oai"].records()[0]["service_s"] == 3.0


def test_full_queue_answers_503_which_is_host_busy(client: LLMClient, fleet: SimFleet) -> None:
    """One slot, no queue: a second request while the first decodes is HostBusy (503)."""
    results: list[Completion] = []
    first = threading.Thread(
        target=lambda: results.append(
            client.complete("olla", PROMPT, tags=TaskTags(service_s=100.0))
        )
    )
    first.start()
    try:
        wait_until(lambda: fleet["olla"].status()["busy_slots"] >= 1, timeout_s=30,
                   what="olla decodes the first request")  # fmt: skip
        with pytest.raises(HostBusy) as caught:
            client.complete("olla", PROMPT)
    finally:
        first.join()
    assert isinstance(caught.value, TransientError) and caught.value.status == 503
    assert "host olla: HTTP 503" in str(caught.value) and "server busy" in str(caught.value)
    assert len(results) == 1 and fleet["olla"].status()["rejected"] == 1


@pytest.mark.parametrize("name", ["olla", "oai"])
def test_unknown_model_is_rejected_naming_host_and_404(fleet: SimFleet, name: str) -> None:
    """Asking for a model the host does not serve: HostRejected (permanent), host and 404 named."""
    hosts = {
        n: h.model_copy(update={"model": "nope:1b"}) for n, h in fleet.host_overrides().items()
    }
    with LLMClient(load_settings(hosts=hosts)) as client, pytest.raises(HostRejected) as caught:
        client.complete(name, PROMPT)
    assert caught.value.status == 404 and caught.value.host == name
    assert str(caught.value).startswith(f"host {name}: HTTP 404") and "nope" in str(caught.value)


def test_host_down_is_host_unavailable_then_the_cloud_answers() -> None:
    """A downed sim host refuses connections: HostUnavailable, and the work path uses the cloud."""
    hosts = [config("down", "llama3.1:8b", "ollama"), config("cloudy", "gpt-4o-mini", "openai")]
    with SimFleet(hosts) as fleet:
        overrides = fleet.host_overrides()
        cloud = {"url": overrides["cloudy"].base_url, "model": "gpt-4o-mini"}
        retry = {"max_retries": 1, "backoff_s": 0}
        settings = load_settings(hosts={"down": overrides["down"]}, cloud=cloud, retry=retry)
        fleet["down"].down()
        ledger = MemorySpendLedger()
        bead = {"id": "bd-9", "title": PROMPT, "issue_type": "task"}
        order = WorkOrder(bead=bead, kind="text", host="down", priority=2, attempt=1,
                          task_id="ygg:bd-9:1")  # fmt: skip
        with LLMClient(settings) as client:
            with pytest.raises(HostUnavailable, match="host down: cannot reach"):
                client.complete("down", PROMPT)
            fallback = CloudFallback(settings.cloud, ledger=ledger, client=client)
            breaker = breaker_for(settings, MemoryBreakerState())
            answer = perform(order, Resources(settings, client, breaker, fallback))
        assert (answer.host, answer.via_cloud) == ("cloud", True)
        assert answer.text.startswith("[gpt-4o-mini] simulated answer")
        assert answer.cost_usd > 0 and ledger.spent_today() == answer.cost_usd
        assert [r["bead"] for r in fleet["cloudy"].records()] == ["bd-9"]


@pytest.mark.parametrize("name", ["olla", "oai"])
def test_warming_a_host_opens_a_connection_without_a_model_call(
    fleet: SimFleet, settings: Settings, name: str
) -> None:
    """`AsyncLLMClient.warm` (a worker pool process's first act) GETs the server's version or
    model list: True for a live server, no model request recorded; False for a closed port."""
    before = len(fleet[name].records())
    dead = settings.hosts[name].model_copy(update={"base_url": f"http://127.0.0.1:{free_port()}"})

    async def warm_both() -> tuple[bool, bool]:
        async with AsyncLLMClient(settings) as client:
            return await client.warm(settings.hosts[name]), await client.warm(dead)

    assert asyncio.run(warm_both()) == (True, False)
    assert len(fleet[name].records()) == before
