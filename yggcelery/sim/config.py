"""What one simulated model host is: its model, its GPU slots, and how long work takes on it.

Times here are *simulated* seconds: what the work would take on the real GPU. The host sleeps
``simulated * time_scale`` real seconds, so ``time_scale=0.01`` runs a "10 s" answer in 0.1 s
while every figure it reports (service times, busy slot-seconds, utilisation) stays in
simulated seconds and is comparable with the real fleet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from yggcelery.settings import HostSettings, SimSettings

Dialect = Literal["ollama", "openai"]
#: The model server a host stands in for, which decides the endpoints it serves besides the
#: model calls: Ollama's ``/api/*``, llama.cpp's ``/props`` ``/slots`` ``/health``, vLLM's
#: ``/health`` ``/version``, each ``/metrics`` in its server's series; "openai" is ``/v1`` only.
SimServer = Literal["ollama", "llamacpp", "vllm", "openai"]


@dataclass(frozen=True, kw_only=True)
class SimHostConfig:
    """One simulated host: a model served with ``slots`` parallel decodes on 127.0.0.1:``port``."""

    name: str
    model: str
    #: Task kind assumed when a request does not say (header ``X-Ygg-Kind``).
    kind: str = "text"
    slots: int = 1
    #: 0 picks a free port when the host starts.
    port: int = 0
    #: Requests allowed to wait for a slot; one more is answered 503 (Ollama's "server busy").
    max_queue: int = 64
    #: Real seconds per simulated second.
    time_scale: float = 1.0
    #: Simulated fixed cost (prompt processing) per task kind.
    base_s: Mapping[str, float] = field(default_factory=dict)
    default_base_s: float = 2.0
    per_token_s: float = 0.02
    default_output_tokens: int = 200
    #: The dialect the configured host speaks; the simulator serves both, this is only reported.
    dialect: Dialect = "ollama"
    #: Every kind the host serves (``kind`` is the first); kept for :meth:`SimFleet.host_overrides`.
    kinds: tuple[str, ...] = ()
    #: Overflow kinds → speed relative to their own hosts: their work takes ``1 / speed`` as long.
    speeds: Mapping[str, float] = field(default_factory=dict)
    server: SimServer = "ollama"
    #: Requests the server really decodes at once, when it differs from the configured ``slots``
    #: (Ollama falling back to 1, llama.cpp started with another ``--parallel``); None: ``slots``.
    parallel: int | None = None
    #: Context window of one request in tokens (a slot's n_ctx, max_model_len, context_length).
    context_length: int = 8192
    #: Real seconds the model stays loaded after its last request (Ollama's default keep_alive).
    keep_alive_s: float = 300.0
    #: llama.cpp only: ``/metrics`` is served (``--metrics``); False answers 501 as llama-server.
    metrics: bool = True

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"sim host {self.name}: slots must be >= 1, not {self.slots}")
        if self.time_scale <= 0:
            raise ValueError(f"sim host {self.name}: time_scale must be > 0")
        if self.max_queue < 0:
            raise ValueError(f"sim host {self.name}: max_queue must be >= 0")
        if self.parallel is not None and self.parallel < 1:
            raise ValueError(f"sim host {self.name}: parallel must be >= 1, not {self.parallel}")

    @property
    def server_parallel(self) -> int:
        """Requests the simulated server decodes at once when it starts."""
        return self.slots if self.parallel is None else self.parallel

    @classmethod
    def from_settings(
        cls,
        name: str,
        host: HostSettings,
        sim: SimSettings,
        *,
        port: int | None = None,
        time_scale: float | None = None,
    ) -> SimHostConfig:
        """The simulator for configured host ``name``, on its ``base_url`` port unless ``port``."""
        return cls(
            name=name,
            model=host.model,
            kind=host.kinds[0],
            kinds=tuple(host.kinds),
            slots=host.slots,
            port=host.port if port is None else port,
            max_queue=sim.max_queue,
            time_scale=sim.time_scale if time_scale is None else time_scale,
            base_s=dict(sim.base_s),
            default_base_s=sim.default_base_s,
            per_token_s=sim.per_token_s,
            default_output_tokens=sim.default_output_tokens,
            dialect=host.dialect,
            speeds=dict(host.overflow),
            server="ollama" if host.server == "auto" else host.server,
            parallel=sim.parallel.get(name),
        )

    def base_for(self, kind: str | None) -> float:
        """Simulated fixed cost of a task of ``kind`` (the host's own kind when None)."""
        return self.base_s.get(kind or self.kind, self.default_base_s)

    def speed_for(self, kind: str | None) -> float:
        """How fast this host runs ``kind`` relative to the kind's own hosts (1 for its own)."""
        return self.speeds.get(kind or self.kind, 1.0)

    def service_s(self, *, kind: str | None, output_tokens: int | None) -> float:
        """Simulated seconds one slot is busy: (fixed cost + per-token cost * tokens) / speed."""
        tokens = output_tokens if output_tokens and output_tokens > 0 else None
        work_s = self.base_for(kind) + self.per_token_s * (tokens or self.default_output_tokens)
        return work_s / self.speed_for(kind)

    def tokens_for(self, output_tokens: int | None) -> int:
        """Output tokens a request produces: its own limit, else the default."""
        if output_tokens and output_tokens > 0:
            return output_tokens
        return self.default_output_tokens

    def host_settings(self, base_url: str) -> HostSettings:
        """A :class:`HostSettings` describing this host at ``base_url``."""
        return HostSettings(
            base_url=base_url,
            dialect=self.dialect,
            model=self.model,
            slots=self.slots,
            kinds=self.kinds or (self.kind,),
            overflow=dict(self.speeds),
        )
