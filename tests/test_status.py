"""`ygg status` data: expected service times per (host, kind) and beads promoted by aging."""

from __future__ import annotations

from collections.abc import Callable

from yggcelery.beads import JsonlStore
from yggcelery.celery_app import make_app
from yggcelery.estimates import RedisEstimates
from yggcelery.settings import Settings
from yggcelery.status import full_status


def test_status_shows_estimates_seeded_then_measured(
    make_settings: Callable[..., Settings],
) -> None:
    """Every (host, kind) has a row: the configured seed until a duration is measured."""
    settings = make_settings()
    settings.beads.dir.mkdir(parents=True)
    RedisEstimates.from_settings(settings).observe("skadi-code", "code", 20.0)

    data = full_status(make_app(settings), settings, JsonlStore(settings.beads.jsonl_path))

    rows = {(r["host"], r["kind"]): r for r in data["estimates"]}
    assert set(rows) == {(n, k) for n, h in settings.hosts.items() for k in h.kinds}
    code = rows[("skadi-code", "code")]
    assert code["measured"] is True
    assert code["expected_s"] == 20.0  # the first measured duration replaces the seed
    assert rows[("fenrir-chat", "text")] == {
        "host": "fenrir-chat", "kind": "text", "expected_s": 6.0, "measured": False,
    }  # fmt: skip


def test_status_lists_beads_promoted_by_aging(make_settings: Callable[..., Settings]) -> None:
    """A p3 bead ready longer than aging_s is listed as promoted; a p0 never is."""
    settings = make_settings(scheduling={"aging_s": 0.001})
    settings.beads.dir.mkdir(parents=True)
    store = JsonlStore(settings.beads.jsonl_path)
    old = store.create("waiting", priority=3, labels=["kind:text"], actor="me")
    store.create("urgent", priority=0, labels=["kind:text"], actor="me")

    data = full_status(make_app(settings), settings, store)

    assert [(p["bead"], p["filed"]) for p in data["promoted"]] == [(old.id, "p3")]
    assert data["promoted"][0]["now"] in ("p2", "p1")
