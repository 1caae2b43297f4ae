"""What the two API dialects share: a parsed request, an error answer, the simulated answer text."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

#: What a model call asks for: an answer, or (Ollama, empty prompt) only to load or unload.
Action = Literal["answer", "load", "unload"]


@dataclass(frozen=True, kw_only=True)
class SimRequest:
    """One model call, whatever the dialect: what to answer and how long it takes."""

    model: str
    prompt: str
    stream: bool
    #: The request's own output limit (``num_predict`` / ``max_tokens``), if any.
    output_tokens: int | None = None
    #: Simulated service seconds asked for by the request itself (``ygg_service_s``).
    service_s: float | None = None
    #: OpenAI streaming: send a last chunk with ``usage`` (``stream_options.include_usage``).
    include_usage: bool = False
    action: Action = "answer"
    #: Ollama's ``keep_alive`` in real seconds (None: the host's default).
    keep_alive_s: float | None = None


class ApiError(Exception):
    """Raised to answer a request with ``status`` and the dialect's own error ``body``."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body}")


def answer_text(model: str, prompt: str, *, words: int = 8) -> str:
    """The simulated answer: deterministic, short, names the model and the prompt's first words."""
    head = " ".join(prompt.split()[:words]) or "(empty prompt)"
    return f"[{model}] simulated answer to: {head}"


def prompt_tokens(prompt: str) -> int:
    """A rough token count of ``prompt`` (4 characters a token), at least 1."""
    return max(1, len(prompt) // 4)


def positive_int(value: Any) -> int | None:
    """``value`` as a positive int, or None (absent, not a number, or <= 0 meaning unlimited)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value > 0 else None


def non_negative(value: Any) -> float | None:
    """``value`` as a float >= 0, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def go_timestamp(at: float | None = None) -> str:
    """``at`` (epoch seconds) as Go's RFC 3339 with nanoseconds, as Ollama writes ``created_at``."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def digest(model: str) -> str:
    """A stable sha256-looking digest for ``model``."""
    return hashlib.sha256(model.encode()).hexdigest()


def split_chunks(text: str) -> list[str]:
    """``text`` as the pieces a streaming answer sends, one word (with its space) each."""
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]
