"""The sections of the settings, one model per ``ygg.toml`` table: each host, routing, Beads,
timeouts, retries, dispatch, scheduling, the cloud fallback, Flower, the simulator, capacity.

:mod:`yggcelery.settings` puts them together into :class:`~yggcelery.settings.Settings` and
re-exports every name here; import them from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Dialect = Literal["ollama", "openai"]
SortOrder = Literal["priority", "hybrid", "oldest"]
#: The model server behind a host; "auto" finds out from its documented endpoints.
ServerKind = Literal["auto", "ollama", "llamacpp", "vllm", "openai"]

#: The task kinds of the seed fleet; a host may serve any set of kinds, including new ones.
KINDS = ("reasoning", "text", "code")
#: The fastest a host may run an overflow kind, relative to that kind's own hosts.
MAX_SPEED = 10.0


class KeyedError(ValueError):
    """Raised by a validator about a key below the one pydantic reports (``hosts.x.overflow.y``).

    :func:`_explain` names ``key`` instead of the section, so the message points at the line.
    """

    def __init__(self, key: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


class Section(BaseModel):
    """A settings section: unknown keys are errors, so typos are caught at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSettings(Section):
    """One GPU host and the model server on it. Its name is also its Celery queue."""

    base_url: str
    dialect: Dialect = "ollama"
    model: str
    slots: int = Field(ge=1, le=64, description="requests the GPU decodes at once (VRAM-bound)")
    kinds: tuple[str, ...] = Field(min_length=1)
    #: Kinds this host may also run, kind → speed relative to that kind's own hosts. Work goes
    #: here only when it finishes sooner than on its own hosts; empty (the default) pins the host.
    overflow: dict[str, float] = Field(default_factory=dict)
    #: A different model for some of its kinds (``{code = "qwen2.5-coder:7b"}``); others: ``model``.
    models: dict[str, str] = Field(default_factory=dict)
    vram_gib: float | None = None
    #: Name of an environment variable holding a bearer token for this server, if it needs one.
    api_key_env: str | None = None
    #: Which server runs the model (capacity probes read its own endpoints); "auto" detects it.
    server: ServerKind = "auto"
    #: Largest prompt in characters sent to this model; longer issue text is cut, with a note.
    max_prompt_chars: int = Field(default=24_000, ge=256)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.rstrip("/")

    @field_validator("overflow")
    @classmethod
    def _speeds(cls, overflow: dict[str, float]) -> dict[str, float]:
        for kind, speed in overflow.items():
            if not 0 < speed <= MAX_SPEED:
                raise KeyedError(
                    (kind,), f"speed {speed:g} is out of range: 0 < speed <= {MAX_SPEED:g}"
                )
        return overflow

    @model_validator(mode="after")
    def _extra_kinds(self) -> HostSettings:
        for kind in self.overflow:
            if kind in self.kinds:
                raise KeyedError(("overflow", kind), f"{kind!r} is already one of kinds")
        for kind in self.models:
            if self.speed_for(kind) is None:
                raise KeyedError(("models", kind), f"{kind!r} is in neither kinds nor overflow")
        return self

    @property
    def port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    def speed_for(self, kind: str) -> float | None:
        """Relative speed at ``kind``: 1 for its own kinds, its overflow speed, else None."""
        return 1.0 if kind in self.kinds else self.overflow.get(kind)

    def model_for(self, kind: str) -> str:
        """The model that runs ``kind`` here."""
        return self.models.get(kind, self.model)


def seed_hosts() -> dict[str, HostSettings]:
    return {
        "surtr-reasoning": HostSettings(
            base_url="http://127.0.0.1:11435",
            model="deepseek-r1:14b",
            slots=2,
            kinds=("reasoning",),
            vram_gib=24,
        ),
        "fenrir-chat": HostSettings(
            base_url="http://127.0.0.1:11436",
            model="llama3.1:8b",
            slots=3,
            kinds=("text",),
            vram_gib=24,
        ),
        "skadi-code": HostSettings(
            base_url="http://127.0.0.1:11437",
            model="qwen2.5-coder:7b",
            slots=2,
            kinds=("code",),
            vram_gib=16,
        ),
    }


class RoutingSettings(Section):
    """How a bead becomes a task kind: a ``kind:X`` label, then its issue type, then the default."""

    label_prefix: str = "kind:"
    issue_types: dict[str, str] = Field(
        default_factory=lambda: {
            "bug": "code",
            "feature": "code",
            "chore": "code",
            "task": "text",
            "story": "text",
            "epic": "reasoning",
            "spike": "reasoning",
            "decision": "reasoning",
        }
    )
    default_kind: str = "text"


class BeadsSettings(Section):
    """Where the Beads data lives and who we are in it."""

    #: The workspace's ``.beads`` folder; the JSONL store uses ``<dir>/issues.jsonl``.
    dir: Path = Path(".beads")
    #: ``auto`` uses bd when a bd workspace and the binary are found, else the JSONL file.
    store: Literal["auto", "jsonl", "bd"] = "auto"
    bd_binary: str = "bd"
    actor: str = "ygg"
    sort: SortOrder = "priority"
    #: bd's readiness rules for a JSONL file: ``current`` bd, or bd ``1.0`` (beads/ready.py).
    rules: Literal["current", "1.0"] = "current"

    @property
    def jsonl_path(self) -> Path:
        return self.dir / "issues.jsonl"


class TimeoutSettings(Section):
    """Every wait in the system, in seconds."""

    connect_s: float = Field(default=5.0, gt=0)
    #: Longest wait for one model answer (read timeout on the HTTP call).
    read_s: float = Field(default=600.0, gt=0)
    #: Celery soft and hard time limits of one ``run_bead``.
    task_soft_s: float = Field(default=900.0, gt=0)
    task_hard_s: float = Field(default=960.0, gt=0)
    #: Redis visibility timeout: a task unacknowledged this long is delivered again.
    visibility_s: float = Field(default=1200.0, gt=0)
    #: A claimed issue with no message, no running task and no result this long is lost.
    lost_after_s: float = Field(default=1500.0, gt=0)
    #: On a Redis broker, which can be read: a sent attempt whose message is neither queued nor
    #: delivered, that never started and has no result this long after it was sent, never
    #: reached the broker (its dispatcher died mid-publish): it is requeued without waiting for
    #: ``lost_after_s``. Longer than any publish retry, so a slow publish is not mistaken for one.
    unsent_s: float = Field(default=30.0, gt=0)
    #: A worker's main process beats this often (the attempts it runs, in Redis)...
    heartbeat_s: float = Field(default=3.0, gt=0)
    #: ...and a worker silent this long is dead: its started attempts are requeued at once,
    #: without waiting for the visibility timeout.
    worker_dead_s: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> TimeoutSettings:
        if self.task_soft_s > self.task_hard_s:
            raise ValueError("task_soft_s must not exceed task_hard_s")
        if self.worker_dead_s < 2 * self.heartbeat_s:
            raise ValueError(
                f"worker_dead_s ({self.worker_dead_s}) must be at least twice heartbeat_s"
                f" ({self.heartbeat_s}), or one late beat declares a live worker dead"
            )
        if self.visibility_s <= self.task_hard_s:
            raise ValueError(
                f"visibility_s ({self.visibility_s}) must exceed task_hard_s ({self.task_hard_s}),"
                " or a running task is delivered a second time"
            )
        return self


class RetrySettings(Section):
    """Retries of one task on transient errors, and the cap on redeliveries of crashing tasks."""

    max_retries: int = Field(default=4, ge=0)
    backoff_s: float = Field(default=2.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    #: Deliveries of one task (worker deaths included) before the bead is blocked.
    max_deliveries: int = Field(default=3, ge=1)
    #: Dispatch attempts of one bead (lost and requeued) before it is blocked.
    max_attempts: int = Field(default=3, ge=1)
    #: Circuit breaker: consecutive failures that open it, and seconds before it probes again.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, ge=0)


class DispatchSettings(Section):
    """The dispatcher loop."""

    poll_s: float = Field(default=2.0, gt=0)
    #: Between polls, look this often whether the Beads data changed (a ``stat``, no read) and
    #: poll at once when it did, so new work (a p0) is sent within this, not ``poll_s``; 0: off.
    watch_s: float = Field(default=0.1, ge=0)
    #: Tasks kept in the broker per host, as a multiple of its slots (the rest waits in Beads).
    inflight_per_slot: float = Field(default=2.0, ge=1.0)
    status_every_s: float = Field(default=30.0, gt=0)
    reconcile_every_s: float = Field(default=10.0, gt=0)


#: Expected seconds per kind of the seed fleet, until durations are measured.
DEFAULT_EXPECTED_S = {"reasoning": 20.0, "text": 6.0, "code": 10.0}


class SchedulingSettings(Section):
    """Which host finishes a bead first, and in which order ready beads go (``scheduling.py``)."""

    #: Expected seconds of one task of each kind on its own hosts, until durations are measured
    #: (a bead's ``metadata.ygg.expected_s`` overrides it for that bead).
    expected_s: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_EXPECTED_S)
    )
    #: Expected seconds of a kind missing from ``expected_s``.
    default_expected_s: float = Field(default=10.0, gt=0)
    #: Weight of each measured duration in the running estimate per (host, kind) (an EWMA; the
    #: first ``1 / estimate_weight`` durations are averaged, the first replacing the seed).
    estimate_weight: float = Field(default=0.2, gt=0, le=1)
    #: A bead ready this long goes one priority level more urgent per ``aging_s`` waited, never
    #: above p1 (a real p0 stays the only p0); 0 turns aging off.
    aging_s: float = Field(default=60.0, ge=0)
    #: Order within a priority level: Beads' own, or shortest expected service first.
    order: Literal["beads", "shortest"] = "beads"

    def default_s(self, kind: str) -> float:
        """Expected seconds of ``kind`` on its own hosts before anything is measured."""
        return self.expected_s.get(kind, self.default_expected_s)


class CloudSettings(Section):
    """An optional OpenAI-compatible endpoint that takes work when a host is down."""

    url: str | None = None
    model: str = "gpt-4o-mini"
    #: The *name* of the environment variable that holds the API key; the key itself never
    #: enters settings, logs, results or Beads.
    api_key_env: str = "YGG_CLOUD_API_KEY"
    price_per_1k_tokens_usd: float = Field(default=0.002, ge=0)
    daily_budget_usd: float = Field(default=5.0, ge=0)
    max_prompt_chars: int = Field(default=48_000, ge=256)

    @field_validator("url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        """``YGG_CLOUD__URL=`` (empty) means no fallback, not a fallback to ``""``."""
        return value.strip() or None if value is not None else None

    @property
    def enabled(self) -> bool:
        return self.url is not None


class FlowerSettings(Section):
    """The Flower web UI."""

    address: str = "127.0.0.1"
    port: int = Field(default=5555, ge=1, le=65535)
    user: str = "ygg"
    #: Empty means: generate one at start-up and print it once.
    password: SecretStr | None = None


# The TOML document for the Settings being built: pydantic-settings sources are classes, so the
# parsed file reaches ours through a context variable rather than a global.


class SimSettings(Section):
    """The model-host simulator (``ygg sim``): how long simulated work takes on a simulated GPU."""

    #: Real seconds per simulated second: 0.005 runs a "10 s" task in 50 ms.
    time_scale: float = Field(default=1.0, gt=0)
    #: Requests waiting for a slot beyond which a host answers 503 (Ollama's "server busy").
    max_queue: int = Field(default=64, ge=0)
    #: Simulated seconds of fixed cost (prompt processing) per task kind, before decoding.
    base_s: dict[str, float] = Field(
        default_factory=lambda: {"reasoning": 6.0, "text": 2.0, "code": 4.0}
    )
    default_base_s: float = Field(default=2.0, ge=0)
    #: Simulated seconds per output token while decoding.
    per_token_s: float = Field(default=0.02, ge=0)
    default_output_tokens: int = Field(default=200, ge=1)
    #: Requests a simulated server really runs at once, per host name, where it is not the
    #: host's ``slots`` (to try a mismatch: ``parallel = {fenrir-chat = 1}``).
    parallel: dict[str, int] = Field(default_factory=dict)


class CapacitySettings(Section):
    """Reading each host's real capacity from its model server (doctor, tune, live checks)."""

    #: Seconds between two probes of a host's server by the live checks.
    probe_s: float = Field(default=10.0, gt=0)
    #: Timeout of one status request (``/props``, ``/metrics``, ``/api/ps``...).
    timeout_s: float = Field(default=3.0, gt=0)
    #: Ollama reports no parallelism, so it is measured with this many concurrent short
    #: requests (0: twice the configured slots, at least 2).
    measure_requests: int = Field(default=0, ge=0, le=64)
    #: Tokens each measuring request asks for.
    measure_tokens: int = Field(default=8, ge=1, le=256)
    #: Longest wait for the measuring requests, a cold model load included.
    measure_timeout_s: float = Field(default=120.0, gt=0)
