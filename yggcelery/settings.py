"""One validated settings object, from ``YGG_*`` environment variables and an optional ``ygg.toml``.

Precedence, highest first: keyword overrides (tests, the CLI), ``YGG_*`` environment variables
(nested keys joined with ``__``, e.g. ``YGG_DISPATCH__POLL_S=1``), then the TOML file named by
``YGG_CONFIG`` or ``./ygg.toml``. The defaults describe the seed fleet (surtr, fenrir, skadi) on
loopback ports, which is what ``ygg sim`` and ``make demo`` serve, so nothing is needed to try it.

Settings are built once, by :func:`load_settings`, and passed in; nothing reads the environment
at import time.
"""

from __future__ import annotations

import contextvars
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from yggcelery.errors import ConfigError

Dialect = Literal["ollama", "openai"]
SortOrder = Literal["priority", "hybrid", "oldest"]
#: The model server behind a host; "auto" finds out from its documented endpoints.
ServerKind = Literal["auto", "ollama", "llamacpp", "vllm", "openai"]

#: The task kinds of the seed fleet; a host may serve any set of kinds, including new ones.
KINDS = ("reasoning", "text", "code")
#: The fastest a host may run an overflow kind, relative to that kind's own hosts.
MAX_SPEED = 10.0


class _KeyedError(ValueError):
    """Raised by a validator about a key below the one pydantic reports (``hosts.x.overflow.y``).

    :func:`_explain` names ``key`` instead of the section, so the message points at the line.
    """

    def __init__(self, key: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


class _Strict(BaseModel):
    """A settings section: unknown keys are errors, so typos are caught at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSettings(_Strict):
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
                raise _KeyedError(
                    (kind,), f"speed {speed:g} is out of range: 0 < speed <= {MAX_SPEED:g}"
                )
        return overflow

    @model_validator(mode="after")
    def _extra_kinds(self) -> HostSettings:
        for kind in self.overflow:
            if kind in self.kinds:
                raise _KeyedError(("overflow", kind), f"{kind!r} is already one of kinds")
        for kind in self.models:
            if self.speed_for(kind) is None:
                raise _KeyedError(("models", kind), f"{kind!r} is in neither kinds nor overflow")
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


def _seed_hosts() -> dict[str, HostSettings]:
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


class RoutingSettings(_Strict):
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


class BeadsSettings(_Strict):
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


class TimeoutSettings(_Strict):
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


class RetrySettings(_Strict):
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


class DispatchSettings(_Strict):
    """The dispatcher loop."""

    poll_s: float = Field(default=2.0, gt=0)
    #: Tasks kept in the broker per host, as a multiple of its slots (the rest waits in Beads).
    inflight_per_slot: float = Field(default=2.0, ge=1.0)
    status_every_s: float = Field(default=30.0, gt=0)
    reconcile_every_s: float = Field(default=10.0, gt=0)


#: Expected seconds per kind of the seed fleet, until durations are measured.
DEFAULT_EXPECTED_S = {"reasoning": 20.0, "text": 6.0, "code": 10.0}


class SchedulingSettings(_Strict):
    """Which host finishes a bead first, and in which order ready beads go (``scheduling.py``)."""

    #: Expected seconds of one task of each kind on its own hosts, until durations are measured
    #: (a bead's ``metadata.ygg.expected_s`` overrides it for that bead).
    expected_s: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_EXPECTED_S)
    )
    #: Expected seconds of a kind missing from ``expected_s``.
    default_expected_s: float = Field(default=10.0, gt=0)
    #: Weight of each measured duration in the running estimate per (host, kind) (an EWMA).
    estimate_weight: float = Field(default=0.2, gt=0, le=1)
    #: A bead ready this long goes one priority level more urgent per ``aging_s`` waited, never
    #: above p1 (a real p0 stays the only p0); 0 turns aging off.
    aging_s: float = Field(default=60.0, ge=0)
    #: Order within a priority level: Beads' own, or shortest expected service first.
    order: Literal["beads", "shortest"] = "beads"

    def default_s(self, kind: str) -> float:
        """Expected seconds of ``kind`` on its own hosts before anything is measured."""
        return self.expected_s.get(kind, self.default_expected_s)


class CloudSettings(_Strict):
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


class FlowerSettings(_Strict):
    """The Flower web UI."""

    address: str = "127.0.0.1"
    port: int = Field(default=5555, ge=1, le=65535)
    user: str = "ygg"
    #: Empty means: generate one at start-up and print it once.
    password: SecretStr | None = None


# The TOML document for the Settings being built: pydantic-settings sources are classes, so the
# parsed file reaches ours through a context variable rather than a global.
_toml_data: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "_toml_data", default=MappingProxyType({})
)


class _TomlSource(PydanticBaseSettingsSource):
    """The parsed ``ygg.toml``, below the environment in precedence."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _toml_data.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_data.get())


class SimSettings(_Strict):
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


class CapacitySettings(_Strict):
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


class Settings(BaseSettings):
    """Everything yggcelery needs to run, validated once at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="YGG_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    hosts: dict[str, HostSettings] = Field(default_factory=_seed_hosts)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = "redis://127.0.0.1:6379/1"
    #: With ``sentinel://`` URLs: the name the Sentinels monitor the primary under
    #: (``sentinel monitor <name> ...``); kombu and Celery call it ``master_name``.
    sentinel_master: str = "mymaster"
    #: Queue for beat's reconcile job; a worker must consume it (``ygg worker`` adds it).
    control_queue: str = "ygg-control"
    beads: BeadsSettings = Field(default_factory=BeadsSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    scheduling: SchedulingSettings = Field(default_factory=SchedulingSettings)
    cloud: CloudSettings = Field(default_factory=CloudSettings)
    flower: FlowerSettings = Field(default_factory=FlowerSettings)
    sim: SimSettings = Field(default_factory=SimSettings)
    capacity: CapacitySettings = Field(default_factory=CapacitySettings)
    #: The dispatcher's Prometheus endpoint; port 0 turns it off. The address is loopback by
    #: default (the series name hosts and queues); a container publishing it needs 0.0.0.0.
    metrics_address: str = "127.0.0.1"
    metrics_port: int = Field(default=9808, ge=0, le=65535)

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _broker(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in (
            "redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp", "memory", "unix"
        ):  # fmt: skip
            raise ValueError(f"unsupported URL scheme {scheme!r} in {value!r}")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: dict[str, HostSettings]) -> dict[str, HostSettings]:
        if not hosts:
            raise ValueError("at least one host is required")
        return hosts

    @model_validator(mode="after")
    def _routes_reach_hosts(self) -> Settings:
        """Every kind routing can produce must reach a host (unserved kinds use the default)."""
        if not self.hosts_for(self.routing.default_kind):
            served = sorted({kind for host in self.hosts.values() for kind in host.kinds})
            raise ValueError(
                f"routing.default_kind {self.routing.default_kind!r} is served by no host"
                f" (hosts serve: {', '.join(served)})"
            )
        return self

    @model_validator(mode="after")
    def _extra_kinds_are_served(self) -> Settings:
        """Overflow kinds and expected times name kinds some host serves as one of its kinds."""
        served = {kind for host in self.hosts.values() for kind in host.kinds}
        for name, host in self.hosts.items():
            for kind in host.overflow:
                if kind not in served:
                    raise _KeyedError(("hosts", name, "overflow", kind), _unserved(kind, served))
        if "expected_s" in self.scheduling.model_fields_set:
            # A seed kind's default time is harmless where no host serves it (the settings of a
            # partial fleet travel to its workers as YGG_* variables, defaults included).
            for kind in self.scheduling.expected_s:
                if kind not in served and kind not in DEFAULT_EXPECTED_S:
                    raise _KeyedError(("scheduling", "expected_s", kind), _unserved(kind, served))
        return self

    @property
    def broker_kind(self) -> Literal["redis", "amqp", "memory"]:
        scheme = urlsplit(self.broker_url).scheme
        if scheme.startswith("redis") or scheme in ("sentinel", "unix"):
            return "redis"
        return "memory" if scheme == "memory" else "amqp"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    def host(self, name: str) -> HostSettings:
        """The host called ``name``, or a :class:`ConfigError` listing the known ones."""
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(sorted(self.hosts))
            raise ConfigError(f"unknown host {name!r} (configured: {known})") from None

    def hosts_for(self, kind: str) -> list[str]:
        """Hosts that serve ``kind``, in configuration order."""
        return [name for name, host in self.hosts.items() if kind in host.kinds]

    def speeds_for(self, kind: str) -> dict[str, float]:
        """Hosts able to run ``kind`` → relative speed: its own hosts (1.0), then overflow ones."""
        own = {name: 1.0 for name in self.hosts_for(kind)}
        extra = {n: h.overflow[kind] for n, h in self.hosts.items() if kind in h.overflow}
        return own | extra

    def __repr__(self) -> str:
        hosts = ",".join(f"{n}:{h.slots}" for n, h in self.hosts.items())
        return f"<Settings hosts={hosts} broker={_redact(self.broker_url)}>"


def _unserved(kind: str, served: set[str]) -> str:
    return f"no host serves kind {kind!r} (hosts serve: {', '.join(sorted(served))})"


def _redact(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


redact_url = _redact


def config_path(explicit: str | Path | None = None) -> Path | None:
    """The settings file: ``explicit``, else ``$YGG_CONFIG``, else ``./ygg.toml`` if present.

    A path named explicitly or by ``YGG_CONFIG`` must exist; ``./ygg.toml`` is optional.
    """
    named = explicit or os.environ.get("YGG_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"settings file {path} does not exist")
        return path
    default = Path("ygg.toml")
    return default if default.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``, or one :class:`ConfigError` naming the file and position."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"settings file {path}: cannot read: {exc.strerror}") from None


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once: ``overrides`` > ``YGG_*`` env > the TOML file > defaults.

    Any invalid value raises one :class:`ConfigError` whose message names the key, what is wrong
    with it, and where it came from (the file, or the environment).
    """
    path = config_path(config)
    data = read_toml(path) if path else {}
    token = _toml_data.set(data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path, data)) from None
    finally:
        _toml_data.reset(token)


def _explain(exc: ValidationError, path: Path | None, data: Mapping[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        loc, msg = error["loc"], error["msg"]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _KeyedError):
            loc, msg = (*loc, *cause.key), str(cause)
        key = ".".join(str(part) for part in loc) or "(root)"
        origin = f"settings file {path}" if path and _has_key(data, loc) else "settings"
        problems.append(f"{origin}: {key}: {msg}")
    return "; ".join(problems)


def _has_key(data: Mapping[str, Any], loc: tuple[int | str, ...]) -> bool:
    """Whether the value at ``loc`` (or its section) was written in the file."""
    return bool(loc) and isinstance(data, Mapping) and loc[0] in data


def to_env(settings: Settings) -> dict[str, str]:
    """``YGG_*`` variables that rebuild ``settings`` in a child process (secrets included)."""
    data = settings.model_dump(mode="json")
    if settings.flower.password is not None:
        data["flower"]["password"] = settings.flower.password.get_secret_value()
    env = {}
    for name, value in data.items():
        if value is None:
            continue
        env[f"YGG_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env
