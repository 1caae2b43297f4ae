"""Routing policy: kind from label/type/default, host by room, broker priority per broker."""

from __future__ import annotations

from yggcelery.beads import Issue
from yggcelery.routing import (
    bead_of_task,
    broker_priority,
    candidate_hosts,
    kind_of,
    pick_host,
    task_id,
)
from yggcelery.settings import load_settings


def issue(**fields: object) -> Issue:
    return Issue.model_validate(
        {"id": "bd-1", "title": "t", "created_at": "2026-01-01T00:00:00Z", **fields}
    )


def test_kind_label_wins_over_issue_type() -> None:
    """`kind:reasoning` on a bug routes as reasoning."""
    assert (
        kind_of(issue(issue_type="bug", labels=["x", "kind:reasoning"]), load_settings())
        == "reasoning"
    )


def test_issue_type_then_default_kind() -> None:
    """A bug is code; an unknown type falls back to the default kind."""
    settings = load_settings()
    assert kind_of(issue(issue_type="bug"), settings) == "code"
    assert kind_of(issue(issue_type="convoy"), settings) == settings.routing.default_kind


def test_unknown_kind_falls_back_to_the_default_kinds_hosts() -> None:
    """A kind nobody serves goes where the default kind goes."""
    assert candidate_hosts("poetry", load_settings()) == ["fenrir-chat"]


def test_pick_host_prefers_most_room_and_skips_down_hosts() -> None:
    """Most room wins; a down or full host is never picked."""
    assert pick_host(["a", "b"], room={"a": 1, "b": 3}) == "b"
    assert pick_host(["a", "b"], room={"a": 1, "b": 3}, down={"b"}) == "a"
    assert pick_host(["a"], room={"a": 0}) is None


def test_broker_priority_redis_keeps_and_rabbitmq_inverts() -> None:
    """Redis: p0 → 0 (consumed first); RabbitMQ: p0 → 4 (highest first); out of range clamps."""
    assert [broker_priority(p, "redis") for p in range(5)] == [0, 1, 2, 3, 4]
    assert [broker_priority(p, "amqp") for p in range(5)] == [4, 3, 2, 1, 0]
    assert broker_priority(9, "redis") == 4


def test_task_ids_are_deterministic_and_reversible() -> None:
    """The same bead and attempt give the same id; ids with dashes in the prefix parse back."""
    assert task_id("nv-skyhook-1.2", 3) == task_id("nv-skyhook-1.2", 3)
    assert bead_of_task(task_id("nv-skyhook-1.2", 3)) == ("nv-skyhook-1.2", 3)
    assert bead_of_task("random-uuid") is None
