"""A multi-host test bed: every machine of the cluster in its own network namespace.

The broker, the control machine (Beads, dispatcher, beat, control worker) and surtr, fenrir and
skadi (each with its ``ygg worker`` and its model server) share nothing but a switch; each runs
the commands an operator runs, with a settings file of its own (:mod:`.netbed_files`). Faults are
the network's (:mod:`.netns`): a link down, a silent partition, a squeezed link. ::

    with NetBed(BedPlan(workspace=tmp / "workspace"), run_dir=tmp / "bed") as bed:
        seed_issues(bed.store(), count=30)
        bed.start_loop()
        with bed.net.partition("skadi", "broker"):
            ...
        bed.wait_loop(timeout_s=120)
        audit(bed.store())

Leaving the block stops every process and removes every namespace, also after a failure;
:meth:`NetBed.leftovers` says what, if anything, survived. A bed holds an flock on
``/run/ygg-netbed/<run>.lock`` while it lives; ``python -m yggcelery.testing.netbed --cleanup``
removes the namespaces of beds whose lock nobody holds (a killed test run's leftovers).

Needs root, ``ip``, ``nft`` and ``tc`` (:func:`~yggcelery.testing.netns.missing_requirements`).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psutil

from yggcelery.beads import JsonlStore
from yggcelery.testing.netbed_files import (
    ADDRESSES,
    CLOUD_PORT,
    GPU_HOSTS,
    MODEL_PORT,
    REDIS_PORT,
    SENTINEL_MACHINES,
    SENTINEL_PORT,
    BedPlan,
    host_machine,
    machine_files,
    write_examples,
)
from yggcelery.testing.netns import NAME_RE, Namespace, NetnsError, Network, namespaces
from yggcelery.testing.waiting import wait_until

LOCK_DIR = Path("/run/ygg-netbed")
#: The only variables the bed's processes inherit: none of the test's own YGG_* settings.
_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH")
#: Grace after SIGTERM before the bed SIGKILLs what is left (a test's cluster need not drain).
STOP_GRACE_S = 5.0
CLOUD = "cloud"


@dataclass
class Service:
    """One process of the bed, started in its own session inside a machine's namespace."""

    name: str
    machine: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the service's whole process group (a worker and its pool)."""
        if self.alive:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)


class RunLock:
    """The flock a live bed holds on ``/run/ygg-netbed/<run>.lock``: :func:`cleanup` spares the
    namespaces of a run whose lock is held, and removes those of a run whose holder died."""

    def __init__(self, run_id: str) -> None:
        self.path = LOCK_DIR / f"{run_id}.lock"
        self._file: IO[bytes] | None = None

    def acquire(self) -> None:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("wb")
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None

    @property
    def held(self) -> bool:
        """Whether some process (this one included) holds the lock now."""
        if self._file is not None:
            return True
        if not self.path.exists():
            return False
        with self.path.open("rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False


class NetBed:
    """The whole cluster on its own network; a context manager that leaves nothing behind."""

    def __init__(self, plan: BedPlan, *, run_dir: Path, run_id: str | None = None) -> None:
        self.plan = plan
        self.run_dir = Path(run_dir)
        self.run_id = run_id or secrets.token_hex(3)
        self.net = Network(self.run_id, {m: ADDRESSES[m] for m in plan.machines})
        self.services: dict[str, Service] = {}
        self._pids_seen: set[int] = set()
        self.lock = RunLock(self.run_id)

    def __repr__(self) -> str:
        alive = sorted(name for name, s in self.services.items() if s.alive)
        return f"<NetBed {self.run_id} running={alive}>"

    def __enter__(self) -> NetBed:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Create the network, write every machine's files, start the cluster (the dispatcher
        comes with :meth:`start_loop`) and wait until it is ready; on failure, undo it all."""
        try:
            self.lock.acquire()
            self.plan.workspace.mkdir(parents=True, exist_ok=True)
            self.net.create()
            for machine in self.plan.machines:
                self._write_files(machine)
            self._start_brokers()
            self._start_gpu_hosts()
            self._start_control()
            self.wait_ready()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL), remove every namespace, drop the lock.
        Safe to call twice."""
        for service in self.services.values():
            self._remember_pids(service)
            service.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for service in self.services.values():
            try:
                service.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                service.signal(signal.SIGKILL)
                service.proc.wait(timeout=10)
        try:
            self.net.destroy()
        finally:
            self.lock.release()

    def pids(self) -> set[int]:
        """Every process the bed started, and their children (a worker's pool), seen so far."""
        for service in self.services.values():
            self._remember_pids(service)
        return set(self._pids_seen)

    def leftovers(self) -> list[str]:
        """What survived :meth:`close`: namespaces of this run and processes it started."""
        left = [f"namespace {name}" for name in self.net.leftovers()]
        for pid in sorted(self._pids_seen):
            with suppress(psutil.NoSuchProcess):
                status = psutil.Process(pid).status()
                if status != psutil.STATUS_ZOMBIE:
                    left.append(f"process {pid} ({status})")
        return left

    def _remember_pids(self, service: Service) -> None:
        self._pids_seen.add(service.proc.pid)
        with suppress(psutil.NoSuchProcess):
            children = psutil.Process(service.proc.pid).children(recursive=True)
            self._pids_seen |= {child.pid for child in children}

    # --- files and processes --------------------------------------------------------------

    def config(self, machine: str, name: str = "ygg.toml") -> Path:
        """A settings file of ``machine`` (``run_dir/<machine>/<name>``)."""
        return self.run_dir / machine / name

    def _write_files(self, machine: str) -> None:
        folder = self.run_dir / machine
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in machine_files(self.plan, machine, data_dir=folder).items():
            (folder / name).write_text(text)

    def spawn(self, machine: str, name: str, argv: list[str]) -> Service:
        """Start ``argv`` inside ``machine``'s namespace, in a session of its own, with its
        output in ``<machine>/<name>.log`` (on control, in the Beads workspace)."""
        log_path = self.run_dir / machine / f"{name}.log"
        cwd = self.plan.workspace if machine == "control" else self.run_dir / machine
        env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
        env["PYTHONUNBUFFERED"] = "1"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                self.net.namespace(machine).argv(argv),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=cwd, env=env, start_new_session=True,
            )  # fmt: skip
        service = self.services[name] = Service(name, machine, proc, log_path)
        self._pids_seen.add(proc.pid)
        return service

    def ygg(self, machine: str, name: str, *args: str, config: str = "ygg.toml") -> Service:
        """``ygg --config <machine>/<config> ARGS`` on ``machine``."""
        argv = [sys.executable, "-m", "yggcelery", "--config", str(self.config(machine, config))]
        return self.spawn(machine, name, [*argv, *args])

    def _start_brokers(self) -> None:
        for machine in ("broker", "replica") if self.plan.sentinel else ("broker",):
            conf = str(self.config(machine, "redis.conf"))
            self.spawn(machine, f"redis-{machine}", ["redis-server", conf])
            self.wait_listening(machine, REDIS_PORT)
        for machine in SENTINEL_MACHINES if self.plan.sentinel else ():
            conf = str(self.config(machine, "sentinel.conf"))
            self.spawn(machine, f"sentinel-{machine}", ["redis-server", conf, "--sentinel"])
            self.wait_listening(machine, SENTINEL_PORT)

    def _start_gpu_hosts(self) -> None:
        for machine, spec in GPU_HOSTS.items():
            self._model_server(machine, spec["name"], MODEL_PORT, config="ygg.toml")
            self.ygg(machine, spec["name"], "worker", spec["name"], "--loglevel", "INFO")

    def _model_server(self, machine: str, host: str, port: int, *, config: str) -> None:
        """``ygg sim`` for ``host`` on ``machine``'s loopback, published on its address by a
        forwarder (the simulator, like Ollama by default, listens on 127.0.0.1 only)."""
        self.ygg(machine, f"sim-{host}", "sim", "--host", host, config=config)
        listen, target = f"{ADDRESSES[machine]}:{port}", f"127.0.0.1:{port}"
        forward = ["-m", "yggcelery.testing.forward", "--listen", listen, "--to", target]
        self.spawn(machine, f"forward-{host}", [sys.executable, *forward])

    def _start_control(self) -> None:
        schedule = str(self.run_dir / "control" / "beat-schedule")
        self.ygg("control", "control", "worker", "control", "--loglevel", "INFO")
        self.ygg("control", "beat", "beat", "--schedule-file", schedule, "--loglevel", "INFO")
        if self.plan.cloud:
            self._model_server("control", CLOUD, CLOUD_PORT, config="cloud-sim.toml")
            self.ygg("control", CLOUD, "worker", CLOUD, "--loglevel", "INFO")

    def start_loop(self) -> Service:
        """``ygg loop --until-idle`` on the control machine: it stops once nothing is left."""
        return self.ygg("control", "loop", "loop", "--until-idle")

    def wait_loop(self, *, timeout_s: float) -> int:
        """Wait for the loop to end by itself; its exit status."""
        loop = self.services["loop"]
        wait_until(lambda: not loop.alive, timeout_s=timeout_s, what="ygg loop ends (idle)",
                   every_s=0.5)  # fmt: skip
        return int(loop.proc.returncode)

    # --- readiness and observation --------------------------------------------------------

    @property
    def workers(self) -> list[str]:
        """Every ``ygg worker`` of the bed, by its name (host, control, cloud)."""
        names = [spec["name"] for spec in GPU_HOSTS.values()] + ["control"]
        return names + ([CLOUD] if self.plan.cloud else [])

    @property
    def model_hosts(self) -> list[str]:
        """Hosts whose model server keeps request records (the cloud endpoint included)."""
        return [spec["name"] for spec in GPU_HOSTS.values()] + ([CLOUD] if self.plan.cloud else [])

    def wait_ready(self, *, timeout_s: float = 90.0) -> None:
        """Every model server answers on its address and every worker has said ``ready.``."""
        for host in self.model_hosts:
            machine, port = self._model_address(host)
            self.wait_listening(machine, port)
        for name in self.workers:
            wait_until(partial(self._ready, name), timeout_s=timeout_s,
                       what=f"worker {name} ready", every_s=0.2)  # fmt: skip

    def _ready(self, worker: str) -> bool:
        """Celery's ``<name>@<host> ready.`` line is in the worker's log (and nothing died)."""
        self.check_alive()
        lines = self.services[worker].log_text().splitlines()
        return any(line.rstrip().endswith(" ready.") for line in lines)

    def check_alive(self) -> None:
        """Raise naming the first service (but the loop) that exited, with its log's end."""
        for service in self.services.values():
            if not service.alive and service.name != "loop":
                raise RuntimeError(
                    f"{service.name} on {service.machine} exited {service.proc.returncode}:\n"
                    + service.log_text()[-2000:]
                )

    def wait_listening(self, machine: str, port: int, *, timeout_s: float = 30.0) -> None:
        """Something accepts connections on ``machine``'s address and ``port`` (asked there)."""
        ns, address = self.net.namespace(machine), ADDRESSES[machine]
        wait_until(lambda: ns.accepts(address, port), timeout_s=timeout_s,
                   what=f"{machine} listening on {address}:{port}", every_s=0.2)  # fmt: skip

    def _model_address(self, host: str) -> tuple[str, int]:
        return ("control", CLOUD_PORT) if host == CLOUD else (host_machine(host), MODEL_PORT)

    def records(self, host: str) -> list[dict[str, Any]]:
        """The model server's request records of ``host`` (or of the cloud endpoint), read on
        its own machine, so a cut link does not hide them."""
        machine, port = self._model_address(host)
        url = f"http://127.0.0.1:{port}/sim/records"
        rows: list[dict[str, Any]] = self.net.namespace(machine).get_json(url)
        return rows

    def all_records(self) -> list[dict[str, Any]]:
        return [row for host in self.model_hosts for row in self.records(host)]

    def redis_cli(self, machine: str, *args: str, port: int = REDIS_PORT) -> str:
        """``redis-cli`` against ``machine``'s own address and ``port``, run there."""
        address = ADDRESSES[machine]
        ns = self.net.namespace(machine)
        return ns.run("redis-cli", "-h", address, "-p", str(port), *args).strip()

    def store(self) -> JsonlStore:
        """The control machine's Beads store (the workspace is on this machine's disk)."""
        path = self.plan.workspace / ".beads" / "issues.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JsonlStore(path)


# --- leftovers ----------------------------------------------------------------------------


def cleanup() -> list[str]:
    """Remove the namespaces (and their processes) of every bed whose lock nobody holds;
    the namespaces of beds still running are left alone. Returns the names removed."""
    removed = []
    for name in namespaces():
        match = NAME_RE.match(name)
        if match is None or RunLock(match["run"]).held:
            continue
        Namespace(name).delete()
        RunLock(match["run"]).path.unlink(missing_ok=True)
        removed.append(name)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m yggcelery.testing.netbed")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--cleanup", action="store_true",
                       help="remove namespaces and processes left by dead test beds")  # fmt: skip
    group.add_argument("--write-examples", type=Path, metavar="DIR",
                       help="write every machine's settings files (ops/netbed)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.write_examples:
        for path in write_examples(args.write_examples):
            print(path)
        return 0
    try:
        removed = cleanup()
    except NetnsError as exc:
        print(f"netbed: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(removed) if removed else "netbed: nothing left to clean up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
