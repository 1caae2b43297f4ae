"""Bad input through the whole cluster: an issue longer than the host's prompt budget.

(Start-up errors are in test_startup_errors.py; property tests of the Beads reader and settings
are in test_beads_*.py and test_settings.py.)
"""

from __future__ import annotations

from collections.abc import Callable

from yggcelery.beads import JsonlStore
from yggcelery.testing.faults import DispatcherThread, audit
from yggcelery.testing.cluster import LocalCluster
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.outcomes import TASK_MARKER
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet

HOST = "skadi-code"
MAX_PROMPT_CHARS = 1_000


def test_issue_longer_than_the_prompt_budget_is_truncated_and_says_so(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """A 50,000-character issue runs with a cut prompt; its result footer says so; a short
    issue's footer does not."""
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
    assert "prompt truncated" in footer[huge.id]
    assert "prompt truncated" not in footer[small.id]
