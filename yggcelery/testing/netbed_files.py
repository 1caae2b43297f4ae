"""The test bed's machines, their addresses, and the settings file each one gets.

Every machine gets the files an operator would write for it, with real addresses: ``ygg.toml``
(the same cluster on every machine; the Beads workspace and the metrics address only on the
control machine, the simulator's speed only on the GPU hosts), ``redis.conf`` for the broker,
and ``sentinel.conf`` where a Sentinel runs. The addresses are fixed: each bed has a switch of
its own, so two beds never meet. ``python -m yggcelery.testing.netbed --write-examples ops/netbed``
writes the files of the default plan; ``ops/netbed/`` holds them, and a test keeps them current.

::

    broker   198.18.0.10   redis-server :6379           (Sentinel mode: + a Sentinel :26379)
    replica  198.18.0.11   Sentinel mode only: redis-server replica + a Sentinel
    control  198.18.0.20   ygg loop, beat, worker control [+ worker cloud, cloud endpoint :8000]
                           (Sentinel mode: + a Sentinel)
    surtr    198.18.0.31   ygg worker surtr-reasoning, model server :11434
    fenrir   198.18.0.32   ygg worker fenrir-chat, model server :11434
    skadi    198.18.0.33   ygg worker skadi-code, model server :11434
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ADDRESSES = {
    "broker": "198.18.0.10",
    "replica": "198.18.0.11",
    "control": "198.18.0.20",
    "surtr": "198.18.0.31",
    "fenrir": "198.18.0.32",
    "skadi": "198.18.0.33",
}
#: The GPU machines and the host (its Celery queue) each one serves, with its model and slots.
GPU_HOSTS: dict[str, dict[str, Any]] = {
    "surtr": {"name": "surtr-reasoning", "model": "deepseek-r1:14b", "slots": 2,
              "kinds": ["reasoning"]},
    "fenrir": {"name": "fenrir-chat", "model": "llama3.1:8b", "slots": 3, "kinds": ["text"]},
    "skadi": {"name": "skadi-code", "model": "qwen2.5-coder:7b", "slots": 2, "kinds": ["code"]},
}  # fmt: skip
REDIS_PORT = 6379
SENTINEL_PORT = 26379
MODEL_PORT = 11434
CLOUD_PORT = 8000
METRICS_PORT = 9808
#: The name the Sentinels monitor the primary under (``sentinel monitor ygg ...``).
SENTINEL_MASTER = "ygg"
#: Where the three Sentinels run: each on a machine of its own, so one machine lost leaves two.
SENTINEL_MACHINES = ("broker", "replica", "control")
SENTINEL_QUORUM = 2
#: Where the example files live and which workspace they name.
EXAMPLE_WORKSPACE = Path("/srv/ygg/workspace")

#: The bed's knobs, chosen so one scenario takes a minute or two: short tasks, short timeouts.
BED_SETTINGS: dict[str, Any] = {
    "timeouts": {"connect_s": 2.0, "read_s": 8.0, "task_soft_s": 20.0, "task_hard_s": 25.0,
                 "visibility_s": 30.0, "lost_after_s": 45.0},
    "retry": {"max_retries": 2, "backoff_s": 0.5, "backoff_max_s": 2.0, "max_deliveries": 3,
              "max_attempts": 3, "breaker_failures": 3, "breaker_cooldown_s": 5.0},
    "dispatch": {"poll_s": 0.5, "reconcile_every_s": 2.0, "status_every_s": 30.0},
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class BedPlan:
    """What a bed runs: the machines' shared choices, as an operator would make them."""

    #: The control machine's Beads workspace (holds ``.beads/``).
    workspace: Path = EXAMPLE_WORKSPACE
    #: Real seconds per simulated second on the model servers.
    time_scale: float = 0.1
    #: A cloud fallback endpoint on the control machine, and ``ygg worker cloud`` there.
    cloud: bool = False
    #: A primary, a replica and three Sentinels instead of one Redis.
    sentinel: bool = False
    #: Deep-merged into every machine's ``ygg.toml`` (``{"retry": {"max_attempts": 1}}``).
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def machines(self) -> list[str]:
        """The machines of this plan (the replica only with Sentinels)."""
        return [m for m in ADDRESSES if self.sentinel or m != "replica"]

    def redis_url(self, db: int) -> str:
        """The broker (db 0) or result backend (db 1) URL every ygg process uses."""
        if not self.sentinel:
            return f"redis://{ADDRESSES['broker']}:{REDIS_PORT}/{db}"
        return ";".join(
            f"sentinel://{ADDRESSES[m]}:{SENTINEL_PORT}/{db}" for m in SENTINEL_MACHINES
        )


def host_machine(host: str) -> str:
    """The machine that runs host ``host`` (``skadi-code`` → ``skadi``)."""
    for machine, spec in GPU_HOSTS.items():
        if spec["name"] == host:
            return machine
    raise KeyError(f"no machine runs host {host!r}")


def ygg_settings(plan: BedPlan, machine: str) -> dict[str, Any]:
    """The ``ygg.toml`` of ``machine`` under ``plan``, as data."""
    data: dict[str, Any] = {
        "broker_url": plan.redis_url(0),
        "result_backend": plan.redis_url(1),
        "metrics_port": 0,
        "hosts": {
            spec["name"]: {
                "base_url": f"http://{ADDRESSES[m]}:{MODEL_PORT}",
                "dialect": "ollama",
                "model": spec["model"],
                "slots": spec["slots"],
                "kinds": spec["kinds"],
            }
            for m, spec in GPU_HOSTS.items()
        },
        **json.loads(json.dumps(BED_SETTINGS)),  # a deep copy
    }
    if plan.sentinel:
        data["sentinel_master"] = SENTINEL_MASTER
    if plan.cloud:
        data["cloud"] = {"url": f"http://{ADDRESSES['control']}:{CLOUD_PORT}",
                         "model": "gpt-4o-mini", "daily_budget_usd": 100.0}  # fmt: skip
    if machine == "control":
        data["metrics_address"] = ADDRESSES["control"]
        data["metrics_port"] = METRICS_PORT
        data["beads"] = {"dir": str(plan.workspace / ".beads"), "store": "jsonl"}
    if machine in GPU_HOSTS:
        data["sim"] = {"time_scale": plan.time_scale}
    return _merged(data, plan.overrides)


def cloud_sim_settings(plan: BedPlan) -> dict[str, Any]:
    """Settings of the simulated cloud endpoint (an OpenAI-compatible server on control)."""
    return {
        "hosts": {"cloud": {"base_url": f"http://{ADDRESSES['control']}:{CLOUD_PORT}",
                            "dialect": "openai", "model": "gpt-4o-mini", "slots": 8,
                            "kinds": ["text"]}},
        "sim": {"time_scale": plan.time_scale},
    }  # fmt: skip


def _merged(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def redis_conf(plan: BedPlan, machine: str, *, data_dir: Path) -> str:
    """``redis.conf`` of the broker (or, with Sentinels, of the replica)."""
    lines = [
        f"bind {ADDRESSES[machine]}",
        f"port {REDIS_PORT}",
        "protected-mode no",
        f"dir {data_dir}",
        'save ""',
        "appendonly no",
        f"logfile {data_dir / 'redis.log'}",
    ]
    if machine == "replica":
        lines.append(f"replicaof {ADDRESSES['broker']} {REDIS_PORT}")
    return _conf(f"redis-server on {machine}", lines)


def sentinel_conf(machine: str, *, data_dir: Path) -> str:
    """``sentinel.conf`` of the Sentinel on ``machine`` (Sentinel rewrites it as it learns)."""
    lines = [
        f"bind {ADDRESSES[machine]}",
        f"port {SENTINEL_PORT}",
        "protected-mode no",
        f"dir {data_dir}",
        f"logfile {data_dir / 'sentinel.log'}",
        f"sentinel monitor {SENTINEL_MASTER} {ADDRESSES['broker']} {REDIS_PORT} {SENTINEL_QUORUM}",
        f"sentinel down-after-milliseconds {SENTINEL_MASTER} 2000",
        f"sentinel failover-timeout {SENTINEL_MASTER} 10000",
        f"sentinel parallel-syncs {SENTINEL_MASTER} 1",
    ]
    return _conf(f"Redis Sentinel on {machine}", lines)


def _conf(what: str, lines: list[str]) -> str:
    return f"# {what} (yggcelery test bed)\n" + "\n".join(lines) + "\n"


def to_toml(data: Mapping[str, Any], *, header: str = "") -> str:
    """``data`` as TOML: scalars and arrays first, then one ``[table]`` per nested mapping."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    _emit(data, (), out)
    return "\n".join(out).strip("\n") + "\n"


def _emit(data: Mapping[str, Any], path: tuple[str, ...], out: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    if path and scalars:
        out += ["", f"[{'.'.join(path)}]"]
    out += [f"{key} = {_value(value)}" for key, value in scalars.items()]
    for key, value in tables.items():
        _emit(value, (*path, key), out)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def machine_files(plan: BedPlan, machine: str, *, data_dir: Path) -> dict[str, str]:
    """File name → text of every settings file ``machine`` gets under ``plan``."""
    header = (
        f"yggcelery on {machine} ({ADDRESSES[machine]}), as the test bed runs it: "
        "`ygg --config ygg.toml ...`.\nShort timeouts and retries: scenarios take a minute, "
        "not a day. Real fleets: ops/ygg.toml.example."
    )
    files: dict[str, str] = {}
    if machine in ("control", *GPU_HOSTS):
        files["ygg.toml"] = to_toml(ygg_settings(plan, machine), header=header)
    if machine == "control" and plan.cloud:
        files["cloud-sim.toml"] = to_toml(
            cloud_sim_settings(plan),
            header="The simulated cloud endpoint (`ygg sim --host cloud`).",
        )
    if machine in ("broker", "replica"):
        files["redis.conf"] = redis_conf(plan, machine, data_dir=data_dir)
    if plan.sentinel and machine in SENTINEL_MACHINES:
        files["sentinel.conf"] = sentinel_conf(machine, data_dir=data_dir)
    return files


def write_examples(dest: Path) -> list[Path]:
    """Write every machine's files of the default plans (plain Redis, and Sentinel with the
    cloud fallback) under ``dest/<machine>/``; returns the paths written."""
    written = []
    plans = {"": BedPlan(), "sentinel": BedPlan(sentinel=True, cloud=True)}
    for variant, plan in plans.items():
        for machine in plan.machines:
            folder = dest / variant / machine if variant else dest / machine
            for name, text in machine_files(plan, machine, data_dir=Path("/var/lib/redis")).items():
                folder.mkdir(parents=True, exist_ok=True)
                (folder / name).write_text(text)
                written.append(folder / name)
    return written
