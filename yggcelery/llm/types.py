"""The values that cross the model-client boundary: a finished completion and a task's tags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

#: Header names of :class:`TaskTags`. Real model servers ignore them; the simulator honours them.
TAG_HEADERS = {
    "bead": "X-Ygg-Bead",
    "priority": "X-Ygg-Priority",
    "kind": "X-Ygg-Kind",
    "service_s": "X-Ygg-Service-S",
}


@dataclass(frozen=True)
class Completion:
    """One model answer and what it cost, as stored in a Celery result (see :meth:`to_dict`).

    Timings are seconds: ``total_s`` is the wall time the client measured; ``load_s``,
    ``prompt_eval_s`` and ``eval_s`` come from the server (Ollama reports them, OpenAI-style
    servers usually do not, and then they are ``None``).
    """

    text: str
    host: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    total_s: float
    load_s: float | None = None
    prompt_eval_s: float | None = None
    eval_s: float | None = None
    via_cloud: bool = False
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens, counting an unreported side as zero."""
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (only str, int, float, bool and None values)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        """The inverse of :meth:`to_dict`; unknown keys are ignored (results outlive versions)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def __repr__(self) -> str:
        cloud = f" cloud ${self.cost_usd:.4f}" if self.via_cloud else ""
        return (
            f"<Completion host={self.host} model={self.model} chars={len(self.text)}"
            f" tokens={self.prompt_tokens}+{self.completion_tokens} {self.total_s:.2f}s{cloud}>"
        )


@dataclass(frozen=True)
class TaskTags:
    """What the task is, sent along as ``X-Ygg-*`` headers (for the simulator and for logs)."""

    bead: str | None = None
    priority: int | None = None
    kind: str | None = None
    service_s: float | None = None

    def headers(self) -> dict[str, str]:
        """The tags that are set, as HTTP headers."""
        return {
            header: str(getattr(self, name))
            for name, header in TAG_HEADERS.items()
            if getattr(self, name) is not None
        }

    @property
    def label(self) -> str:
        """A short name for logs: the bead id, else ``-``."""
        return self.bead or "-"
