"""The simulator's own side channel: injected faults, per-request records, and ``X-Ygg-*`` headers.

Requests may carry ``X-Ygg-Bead`` (issue id), ``X-Ygg-Priority`` (0..4), ``X-Ygg-Kind`` (task
kind, which picks the fixed cost) and ``X-Ygg-Service-S`` (simulated service seconds); the first
three are recorded per request for the benchmark's timeline.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web


@dataclass
class Faults:
    """Faults injected into a host's model endpoints."""

    #: The listening socket is closed: connection refused.
    down: bool = False
    #: Share of model requests answered 500 (0..1).
    error_rate: float = 0.0
    #: Simulated seconds added before a request queues for a slot (not holding one).
    latency_s: float = 0.0
    #: Model requests are accepted and never answered.
    hang: bool = False
    #: Requests the server runs at once, set at run time (None: what it started with), as after
    #: a restart with another ``--parallel`` or ``OLLAMA_NUM_PARALLEL``.
    parallel: int | None = None

    def update(
        self,
        *,
        error_rate: float | None = None,
        latency_s: float | None = None,
        hang: bool | None = None,
    ) -> None:
        """Change the faults given; None leaves one as it is."""
        if error_rate is not None:
            self.error_rate = _checked(error_rate, "error_rate", upper=1.0)
        if latency_s is not None:
            self.latency_s = _checked(latency_s, "latency_s")
        if hang is not None:
            self.hang = hang

    def heal(self) -> None:
        """Clear every fault except ``down``."""
        self.error_rate, self.latency_s, self.hang, self.parallel = 0.0, 0.0, False, None


@dataclass
class RequestRecord:
    """One model request as the host saw it; times are wall-clock ``time.time()`` seconds."""

    host: str
    endpoint: str
    bead: str | None
    priority: int | None
    kind: str
    arrived: float
    model: str | None = None
    started: float | None = None
    finished: float | None = None
    #: Slot index 0..slots-1 that served it; None when it never got one.
    slot: int | None = None
    #: HTTP status answered; 499 when the client went away first; None while in flight, hung,
    #: or aborted because the host went down.
    status: int | None = None
    #: Simulated service seconds it was given, and the real seconds that took (x time_scale).
    service_s: float | None = None
    real_service_s: float | None = None
    #: Injected latency (simulated seconds) it waited before queueing.
    latency_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FailChange:
    """A ``POST /sim/fail`` body, validated."""

    error_rate: float | None = None
    latency_s: float | None = None
    hang: bool | None = None
    down: bool | None = None
    down_for_s: float | None = None
    parallel: int | None = None

    @property
    def goes_down(self) -> bool:
        return self.down is True or self.down_for_s is not None


def new_record(host: str, request: web.Request, *, default_kind: str) -> RequestRecord:
    """The record of a request arriving now, with its ``X-Ygg-*`` headers."""
    headers = request.headers
    return RequestRecord(
        host=host,
        endpoint=request.path,
        bead=headers.get("X-Ygg-Bead") or None,
        priority=_priority(headers.get("X-Ygg-Priority")),
        kind=headers.get("X-Ygg-Kind") or default_kind,
        arrived=time.time(),
    )


def header_service_s(request: web.Request) -> float | None:
    """The ``X-Ygg-Service-S`` header as simulated seconds, if present and valid."""
    try:
        value = float(request.headers.get("X-Ygg-Service-S", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def parse_fail(raw: bytes) -> FailChange:
    """A ``POST /sim/fail`` body, or ValueError naming what is wrong."""
    try:
        body = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    unknown = set(body) - {"error_rate", "latency_s", "hang", "down", "down_for_s", "parallel"}
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    for key in ("hang", "down"):
        if key in body and not isinstance(body[key], bool):
            raise ValueError(f"{key} must be true or false")
    change = FailChange(
        error_rate=_number(body, "error_rate", upper=1.0),
        latency_s=_number(body, "latency_s"),
        hang=body.get("hang"),
        down=body.get("down"),
        down_for_s=_number(body, "down_for_s"),
        parallel=_parallel(body.get("parallel")),
    )
    if change.down is False and change.down_for_s is not None:
        raise ValueError("down: false contradicts down_for_s")
    return change


def _parallel(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"parallel must be an integer >= 1, not {value!r}")
    return value


def _number(body: dict[str, Any], key: str, *, upper: float | None = None) -> float | None:
    if key not in body:
        return None
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    return _checked(float(value), key, upper=upper)


def _checked(value: float, key: str, *, upper: float | None = None) -> float:
    if value < 0 or (upper is not None and value > upper):
        limit = f"0..{upper}" if upper is not None else ">= 0"
        raise ValueError(f"{key} must be {limit}, not {value}")
    return value


def _priority(value: str | None) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if 0 <= number <= 4 else None
