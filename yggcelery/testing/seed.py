"""A realistic mixed Beads workspace: code, text and reasoning issues, priorities 0..4, a few deps.

``make demo`` and the end-to-end tests fill a fresh ``.beads/issues.jsonl`` with it, so what the
demo shows is what the tests check.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yggcelery.beads import BeadsStore, Issue

_TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "code": [
        ("bug", "Fix off-by-one in pagination of {thing}"),
        ("feature", "Add retry with backoff to the {thing} client"),
        ("chore", "Refactor {thing} module into smaller functions"),
        ("bug", "Handle empty input in {thing} parser"),
    ],
    "text": [
        ("task", "Summarise the {thing} design discussion"),
        ("task", "Write release notes for {thing}"),
        ("task", "Extract action items from the {thing} meeting notes"),
    ],
    "reasoning": [
        ("spike", "Compare two caching strategies for {thing}"),
        ("decision", "Decide on the retention policy for {thing}"),
    ],
}
_THINGS = ["billing", "search", "auth", "export", "scheduler", "inventory", "webhooks", "reports"]


def seed_issues(
    store: BeadsStore,
    *,
    count: int = 30,
    seed: int = 1,
    dependency_every: int = 6,
    service_s: float | None = None,
    actor: str = "ygg-demo",
) -> list[Issue]:
    """Create ``count`` issues of mixed kinds and priorities; every ``dependency_every``-th one
    depends on the issue created just before it (so it must wait for it)."""
    rng = random.Random(seed)
    created: list[Issue] = []
    kinds = ["code", "text", "reasoning"]
    for n in range(count):
        kind = kinds[n % len(kinds)]
        issue_type, title = rng.choice(_TEMPLATES[kind])
        thing = rng.choice(_THINGS)
        metadata: dict[str, Any] | None = {"ygg": {"service_s": service_s}} if service_s else None
        depends = (
            [created[-1].id] if created and dependency_every and n % dependency_every == 0 else []
        )
        created.append(
            store.create(
                title.format(thing=thing),
                priority=rng.choice([0, 1, 1, 2, 2, 2, 3, 3, 4]),
                issue_type=issue_type,
                labels=[f"kind:{kind}", "demo"],
                description=f"Issue {n + 1} of the demo workspace ({kind} work on {thing}).",
                acceptance_criteria="A short, concrete answer in the result comment.",
                metadata=metadata,
                depends_on=depends,
                actor=actor,
            )
        )
    return created
