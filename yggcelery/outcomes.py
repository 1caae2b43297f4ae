"""Outcomes of LLM work written back into Beads, exactly once, by every dispatcher.

Delivery through the broker is at least once, and a reconcile pass can die half-way, so every
write here is idempotent: the result comment carries a ``ygg-task: <task id>`` footer and is
added only if no comment with that footer exists yet; an issue already closed is left alone;
a ``blocked`` note is written only once. Running the same outcome twice changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yggcelery.beads import BeadsStore, Issue

log = logging.getLogger(__name__)

TASK_MARKER = "ygg-task:"


@dataclass(frozen=True)
class BeadResult:
    """What ``run_bead`` returns and the reconcile pass writes into Beads (JSON-safe)."""

    bead: str
    task_id: str
    kind: str
    host: str
    model: str
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_s: float = 0.0
    via_cloud: bool = False
    cost_usd: float = 0.0
    prompt_truncated: bool = False
    #: Where and how much the prompt was cut (``yggcelery.work.prompt``), or "".
    prompt_cut: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BeadResult:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def comment(self) -> str:
        """The result comment: the model's answer, then one footer line of provenance."""
        via = f" via cloud (${self.cost_usd:.4f})" if self.via_cloud else ""
        cut = f" · {self.prompt_cut}" if self.prompt_cut else ""
        if self.prompt_truncated and not cut:  # a result from a worker of an older version
            cut = " · prompt truncated to fit the model's context"
        return (
            f"{self.text.strip()}\n\n---\n"
            f"ygg: {self.kind} task on {self.host}{via} · {self.model} · "
            f"{self.prompt_tokens}+{self.completion_tokens} tokens · {self.total_s:.1f}s{cut}\n"
            f"{TASK_MARKER} {self.task_id}"
        )

    def close_reason(self) -> str:
        where = "cloud fallback" if self.via_cloud else self.host
        return f"Completed by yggcelery on {where} ({self.model}) in {self.total_s:.1f}s"


def has_result_comment(issue: Issue, task_id: str) -> bool:
    """Whether ``issue`` already carries the result comment of ``task_id``."""
    footer = f"{TASK_MARKER} {task_id}"
    return any(footer in (comment.text or "") for comment in issue.comments)


def record_success(store: BeadsStore, result: BeadResult, *, actor: str) -> bool:
    """Comment the result and close the issue; False when there was nothing left to do."""
    issue = store.get(result.bead)
    if issue.status == "closed":
        return False
    if not has_result_comment(issue, result.task_id):
        store.add_comment(result.bead, result.comment(), author=actor)
    store.close(result.bead, reason=result.close_reason(), actor=actor)
    log.info("Closed %s (%s on %s)", result.bead, result.kind, result.host)
    return True


def record_failure(store: BeadsStore, bead_id: str, *, reason: str, actor: str) -> bool:
    """Mark the issue ``blocked`` with the reason in its notes; False if already closed/blocked."""
    issue = store.get(bead_id)
    if issue.status in ("closed", "blocked"):
        return False
    store.set_status(bead_id, "blocked", note=f"yggcelery: {reason}", actor=actor)
    log.warning("Blocked %s: %s", bead_id, reason)
    return True


def hand_back(store: BeadsStore, bead_id: str, *, note: str, actor: str) -> bool:
    """Give a claimed issue back to the queue (status ``open``) if we still hold it."""
    issue = store.get(bead_id)
    if issue.status != "in_progress" or issue.assignee != actor:
        return False
    store.reopen(bead_id, note=f"yggcelery: {note}", actor=actor)
    log.info("Handed back %s: %s", bead_id, note)
    return True
