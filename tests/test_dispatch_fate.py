"""The same failure has the same fate under every dispatcher: `ygg loop` (Celery), `--async`
and `--legacy` all decide with work/fate.py.

One model host, a scripted real HTTP server on loopback; the Celery case runs a real worker for
it. Retry settings: 2 tries per attempt, 2 attempts per bead, a breaker that never opens here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from yggcelery.beads import JsonlStore
from yggcelery.dispatch.asyncio import AsyncDispatcher
from yggcelery.dispatch.base import Dispatcher
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.dispatch.legacy import LegacyDispatcher
from yggcelery.llm.fake import FakeModelServer, Reply
from yggcelery.settings import Settings
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread

HOST = "h1"
RETRY = {"max_retries": 1, "backoff_s": 0.01, "backoff_max_s": 0.01, "max_attempts": 2,
         "breaker_failures": 100, "breaker_cooldown_s": 1.0}  # fmt: skip
TRIES = (RETRY["max_retries"] + 1) * RETRY["max_attempts"]
BUSY = Reply(status=503, body={"error": "server busy"})
BAD = Reply(status=400, body={"error": "invalid request: messages must not be empty"})

DISPATCHERS: dict[str, Callable[[Settings, JsonlStore], Dispatcher]] = {
    "celery": CeleryDispatcher,
    "asyncio": AsyncDispatcher,
    "legacy": LegacyDispatcher,
}


@pytest.fixture
def host() -> Iterator[FakeModelServer]:
    with FakeModelServer(text="never sent: every answer is scripted to fail") as server:
        yield server


@pytest.fixture(params=list(DISPATCHERS))
def run_one(
    request: pytest.FixtureRequest,
    host: FakeModelServer,
    make_settings: Callable[..., Settings],
    local_cluster: Callable[..., LocalCluster],
) -> Callable[[], tuple[JsonlStore, str]]:
    """Runs one text bead on ``host`` under the dispatcher of the parameter until it is idle
    (the Celery one with a real worker for the host); returns the store and the bead's id."""
    name: str = request.param
    hosts = {HOST: {"base_url": host.url, "model": "m1", "slots": 1,
                    "kinds": ["text", "code", "reasoning"]}}  # fmt: skip
    settings = make_settings(hosts=hosts, retry=RETRY)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)

    def run() -> tuple[JsonlStore, str]:
        bead = store.create("summarise the meeting", labels=["kind:text"], actor="me").id
        if name == "celery":
            local_cluster(settings, hosts=[HOST], control=False)
        with DispatcherThread(DISPATCHERS[name](settings, store)) as loop:
            assert loop.wait(timeout_s=120), f"{name} dispatcher did not finish"
        assert loop.error is None
        return store, bead

    return run


def ygg_notes(store: JsonlStore, bead: str) -> list[str]:
    notes = store.get(bead).notes or ""
    return [line.removeprefix("yggcelery: ") for line in notes.splitlines()
            if line.startswith("yggcelery: ")]  # fmt: skip


def test_a_host_busy_on_every_try_requeues_then_blocks_the_bead(
    run_one: Callable[[], tuple[JsonlStore, str]], host: FakeModelServer
) -> None:
    """503 on every try: each attempt retries once in place, the first failed attempt hands
    the bead back to open, the second blocks it, with the same reasons under every dispatcher."""
    host.script(*[BUSY] * TRIES)
    store, bead = run_one()
    error = f"HostBusy: host {HOST}: HTTP 503 from {host.url}/api/chat: server busy"
    assert store.get(bead).status == "blocked"
    assert ygg_notes(store, bead) == [
        f"attempt 1 failed: {error}",
        f"{error}; gave up after 2 attempts",
    ]
    assert [r.headers["X-Ygg-Bead"] for r in host.requests] == [bead] * TRIES


def test_a_request_the_host_rejects_blocks_the_bead_at_once(
    run_one: Callable[[], tuple[JsonlStore, str]], host: FakeModelServer
) -> None:
    """400: no retry, no second attempt: blocked with the host's error, after one request."""
    host.script(BAD)
    store, bead = run_one()
    assert store.get(bead).status == "blocked"
    assert ygg_notes(store, bead) == [
        f"HostRejected: host {HOST}: HTTP 400 from {host.url}/api/chat:"
        " invalid request: messages must not be empty"
    ]
    assert len(host.requests) == 1
