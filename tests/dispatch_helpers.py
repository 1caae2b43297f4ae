"""Shared by the legacy and asyncio dispatcher tests: beads with a service time, a small world."""

from __future__ import annotations

from typing import Any

from yggcelery.beads import JsonlStore
from yggcelery.sim import SimFleet

ACTOR = "bench-test"


def add(store: JsonlStore, kind: str, priority: int, service_s: float = 5.0) -> str:
    issue = store.create(
        f"{kind} p{priority}",
        priority=priority,
        labels=[f"kind:{kind}"],
        metadata={"ygg": {"service_s": service_s}},
        actor=ACTOR,
    )
    return issue.id


def records(fleet: SimFleet) -> list[dict[str, Any]]:
    return [r for host in fleet for r in host.records()]
