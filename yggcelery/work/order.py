"""A work order: one dispatch attempt of one bead, as every dispatcher hands it to the work path.

The Celery dispatcher sends it as the task's JSON argument (workers on the GPU hosts never read
Beads); the asyncio and legacy dispatchers pass it in process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yggcelery.llm.types import TaskTags
from yggcelery.routing import beads_priority, task_id
from yggcelery.work.prompt import bead_fields

if TYPE_CHECKING:
    from yggcelery.beads import Issue


def service_s_of(issue: Issue) -> float | None:
    """A simulated service time asked for in ``metadata.ygg.service_s`` (benchmark scenarios)."""
    meta = issue.metadata if isinstance(issue.metadata, dict) else {}
    ygg = meta.get("ygg")
    value = ygg.get("service_s") if isinstance(ygg, dict) else None
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class WorkOrder:
    """One dispatch attempt of one bead, as sent in the Celery message."""

    bead: dict[str, Any]
    kind: str
    host: str
    priority: int
    attempt: int
    task_id: str
    #: Simulated service time asked of the simulator (benchmark scenarios); None for real work.
    service_s: float | None = None

    @classmethod
    def for_issue(cls, issue: Issue, *, kind: str, host: str, attempt: int = 1) -> WorkOrder:
        """Attempt ``attempt`` of ``issue`` on ``host`` (a host name or the cloud queue)."""
        return cls(
            bead=bead_fields(issue),
            kind=kind,
            host=host,
            priority=int(beads_priority(issue)),
            attempt=attempt,
            task_id=task_id(issue.id, attempt),
            service_s=service_s_of(issue),
        )

    @property
    def bead_id(self) -> str:
        return str(self.bead["id"])

    def to_dict(self) -> dict[str, Any]:
        """The message's JSON argument (shallow: the bead's fields are already plain JSON)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def summary(self) -> str:
        """How the task's argument reads in Flower and worker logs (not the whole bead)."""
        title = str(self.bead.get("title", ""))
        title = title if len(title) <= 60 else title[:57] + "..."
        return f"[{self.bead_id} p{self.priority} {self.kind} attempt {self.attempt}: {title!r}]"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkOrder:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def tags(self) -> TaskTags:
        return TaskTags(
            bead=self.bead_id, priority=self.priority, kind=self.kind, service_s=self.service_s
        )
