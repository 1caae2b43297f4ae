"""Bad input through the whole cluster: an issue longer than its target's prompt budget.

(Start-up errors are in test_startup_errors.py; property tests of the Beads reader and settings
are in test_beads_*.py and test_settings.py.)
"""

from __future__ import annotations

from collections.abc import Callable

from yggcelery.beads import JsonlStore
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.llm.fake import FakeModelServer
from yggcelery.outcomes import TASK_MARKER
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread, audit

HOST = "skadi-code"
MAX_PROMPT_CHARS = 1_000


def test_issue_longer_than_the_prompt_budget_is_truncated_and_says_so(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """A 50,000-character issue runs with a prompt cut to the host's limit; its result footer
    says where and how much; a short issue's footer says nothing of a cut."""
    fleet = sim_fleet(time_scale=0.05)
    hosts = fleet.host_overrides()
    hosts[HOST] = hosts[HOST].model_copy(update={"max_prompt_chars": MAX_PROMPT_CHARS})
    settings = make_settings(hosts=hosts)
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    huge = store.create("huge", issue_type="bug", description="x" * 50_000, actor="me")
    small = store.create("small", issue_type="bug", description="short", actor="me")
    local_cluster(settings, hosts=[HOST])

    with DispatcherThread(CeleryDispatcher(settings, store)) as loop:
        assert loop.wait(timeout_s=120)

    assert audit(store).statuses == {"closed": 2}
    footer = {i.id: next(c.text for c in i.comments if TASK_MARKER in c.text)
              for i in store.list_issues()}  # fmt: skip
    assert "prompt cut from 50," in footer[huge.id]
    assert f"for {HOST} (max_prompt_chars {MAX_PROMPT_CHARS:,})" in footer[huge.id]
    assert "prompt cut" not in footer[small.id]


def test_a_cloud_routed_issue_is_cut_once_at_the_cloud_limit_and_says_so(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """The code host is down, so a 50,000-character code issue goes to the cloud queue: the
    cloud endpoint receives its prompt cut once, to cloud.max_prompt_chars (above the host's
    24,000), and the result footer says it was cut, where, and to how much."""
    fleet = sim_fleet(time_scale=0.05)
    fleet[HOST].down()
    with FakeModelServer(text="done on the cloud") as cloud:
        settings = make_settings(fleet=fleet, cloud={"url": cloud.url, "max_prompt_chars": 40_000})
        assert settings.host(HOST).max_prompt_chars == 24_000
        settings.beads.dir.mkdir(parents=True, exist_ok=True)
        store = JsonlStore(settings.beads.jsonl_path)
        huge = store.create("huge", issue_type="bug", description="x" * 50_000, actor="me")
        local_cluster(settings, hosts=["cloud"], control=False)
        with DispatcherThread(CeleryDispatcher(settings, store)) as loop:
            assert loop.wait(timeout_s=120)
        (request,) = cloud.requests
    sent = request.body["messages"][0]["content"]
    assert len(sent) == 40_000 and sent.count("[truncated:") == 1
    issue = store.get(huge.id)
    assert issue.status == "closed"
    (comment,) = [c.text for c in issue.comments if TASK_MARKER in c.text]
    footer = comment.splitlines()[-2]
    assert "via cloud" in footer
    assert footer.endswith("to 40,000 characters for cloud (max_prompt_chars 40,000)")
    assert footer.count("prompt cut from 50,") == 1
