"""Cancel that stops the GPU: a bead closed by a person mid-attempt ends its model request.

Real Redis, a real ``ygg worker`` (prefork pool) and the simulator's HTTP host; the simulator's
request records say when the connection was dropped (status 499: the client went away). Marked
``llm``: the same against a real llama.cpp ``llama-server``, whose ``/slots`` says when it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from yggcelery.beads import JsonlStore
from yggcelery.cancel import cancel_bead
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.outcomes import TASK_MARKER
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread
from yggcelery.testing.llamaserver import LlamaServer, missing
from yggcelery.testing.waiting import wait_until

log = logging.getLogger(__name__)
HOST = "skadi-code"


def running(fleet: SimFleet, bead: str) -> dict[str, object] | None:
    return next(
        (r for r in fleet[HOST].records() if r["bead"] == bead and r["finished"] is None), None
    )


def ended(fleet: SimFleet, bead: str) -> dict[str, object] | None:
    return next(
        (r for r in fleet[HOST].records() if r["bead"] == bead and r["finished"] is not None),
        None,
    )


def test_closing_a_running_bead_aborts_its_model_request_and_writes_nothing(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """A person closes a bead while its 10-minute model call runs: the worker drops the HTTP
    request (the simulator sees the client go away, status 499), no result comment is ever
    written, and the freed slot takes the next bead."""
    fleet = sim_fleet(time_scale=0.1)  # the 600 s task would take 60 s if it were not stopped
    settings = make_settings(fleet=fleet)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    meta = {"ygg": {"service_s": 600.0}}
    long = store.create("long code task", issue_type="bug", metadata=meta, actor="me").id
    local_cluster(settings, hosts=[HOST])
    dispatcher = CeleryDispatcher(settings, store)
    with DispatcherThread(dispatcher, until_idle=False) as loop:
        wait_until(lambda: running(fleet, long), timeout_s=60, what="the long request started")
        store.close(long, reason="done by hand", actor="me")
        closed_at = time.time()
        assert cancel_bead(dispatcher.ledger, long) is not None  # what `ygg beads close` does
        record = wait_until(lambda: ended(fleet, long), timeout_s=20, what="request dropped")
        log.warning("cancel: request ended %.2fs after the close", record["finished"] - closed_at)
        assert record["status"] == 499, record  # the client went away; no answer was sent
        short = store.create("next code task", issue_type="bug",
                             metadata={"ygg": {"service_s": 1.0}}, actor="me").id  # fmt: skip
        wait_until(lambda: store.get(short).status == "closed", timeout_s=60, what="next bead")
        loop.stop()
    issue = store.get(long)
    assert issue.status == "closed"
    assert not any(TASK_MARKER in (c.text or "") for c in issue.comments)


@pytest.mark.llm
@pytest.mark.skipif(missing() is not None, reason=str(missing()))
def test_closing_a_running_bead_frees_a_real_llama_server_slot(
    make_settings: Callable[..., Settings], local_cluster: Callable[..., LocalCluster]
) -> None:
    """The same against llama.cpp's own server (SmolLM2-135M, one slot, every answer forced to
    1,500 tokens: tens of seconds on CPU): once the bead is closed, the server's only slot stops
    decoding (`/slots` is_processing false, `/metrics` requests_processing 0) and no result
    comment is written."""
    with LlamaServer(name=HOST, parallel=1, ctx=2048, n_predict=1500, ignore_eos=True) as server:
        host = server.host_settings(make_settings().hosts[HOST])
        settings = make_settings(hosts={**make_settings().hosts, HOST: host},
                                 timeouts={"read_s": 300, "task_soft_s": 400,
                                           "task_hard_s": 450, "visibility_s": 600})  # fmt: skip
        settings.beads.dir.mkdir(parents=True, exist_ok=True)
        store = JsonlStore(settings.beads.jsonl_path)
        bead = store.create("write a long story", issue_type="bug", actor="me").id
        local_cluster(settings, hosts=[HOST], control=False)
        dispatcher = CeleryDispatcher(settings, store)
        with DispatcherThread(dispatcher, until_idle=False) as loop:
            wait_until(lambda: server.busy_slots() == 1, timeout_s=90, what="the slot decoding")
            store.close(bead, reason="done by hand", actor="me")
            closed_at = time.time()
            assert cancel_bead(dispatcher.ledger, bead) is not None
            wait_until(lambda: server.busy_slots() == 0, timeout_s=20, what="the slot freed")
            freed_s = time.time() - closed_at
            assert server.metrics()["llamacpp:requests_processing"] == 0
            loop.stop()
    log.warning("cancel on llama-server: slot idle %.2fs after the close", freed_s)
    issue = store.get(bead)
    assert issue.status == "closed"
    assert not any(TASK_MARKER in (c.text or "") for c in issue.comments)
