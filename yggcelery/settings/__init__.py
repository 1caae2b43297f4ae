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
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from yggcelery.errors import ConfigError
from yggcelery.settings.sections import (
    DEFAULT_EXPECTED_S,
    KINDS,
    MAX_SPEED,
    BeadsSettings,
    CapacitySettings,
    CloudSettings,
    Dialect,
    DispatchSettings,
    FlowerSettings,
    HostSettings,
    KeyedError,
    RetrySettings,
    RoutingSettings,
    SchedulingSettings,
    Section,
    ServerKind,
    SimSettings,
    SortOrder,
    TimeoutSettings,
    seed_hosts,
)

__all__ = [
    "DEFAULT_EXPECTED_S",
    "KINDS",
    "MAX_SPEED",
    "BeadsSettings",
    "CapacitySettings",
    "CloudSettings",
    "Dialect",
    "DispatchSettings",
    "FlowerSettings",
    "HostSettings",
    "RetrySettings",
    "RoutingSettings",
    "SchedulingSettings",
    "Section",
    "ServerKind",
    "Settings",
    "SimSettings",
    "SortOrder",
    "TimeoutSettings",
    "config_path",
    "load_settings",
    "read_toml",
    "redact_url",
    "to_env",
]

_toml_data: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "_toml_data", default=MappingProxyType({})
)


class _TomlSource(PydanticBaseSettingsSource):
    """The parsed ``ygg.toml``, below the environment in precedence."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _toml_data.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_data.get())


class Settings(BaseSettings):
    """Everything yggcelery needs to run, validated once at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="YGG_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    hosts: dict[str, HostSettings] = Field(default_factory=seed_hosts)
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
                    raise KeyedError(("hosts", name, "overflow", kind), _unserved(kind, served))
        if "expected_s" in self.scheduling.model_fields_set:
            # A seed kind's default time is harmless where no host serves it (the settings of a
            # partial fleet travel to its workers as YGG_* variables, defaults included).
            for kind in self.scheduling.expected_s:
                if kind not in served and kind not in DEFAULT_EXPECTED_S:
                    raise KeyedError(("scheduling", "expected_s", kind), _unserved(kind, served))
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
        if isinstance(cause, KeyedError):
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
