"""A whole cluster on one machine: ``ygg worker`` per host, the control worker, beat, as children.

The demo, the benchmark, the integration tests and the soak runs all start their cluster through
:class:`LocalCluster`, so they exercise exactly the commands an operator runs on surtr, fenrir and
skadi. Settings reach the children as ``YGG_*`` variables (:func:`~yggcelery.settings.to_env`)::

    with RedisServer() as redis, LocalCluster(settings, log_dir=tmp) as cluster:
        cluster.wait_online()
        cluster.kill_worker("skadi-code")      # SIGKILL the worker's main process
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import psutil

from yggcelery.celery_app import make_app
from yggcelery.settings import Settings, to_env
from yggcelery.status import worker_view

log = logging.getLogger(__name__)

CONTROL = "control"


class LocalCluster:
    """Celery workers (and optionally beat) for ``settings``, as child processes."""

    def __init__(
        self,
        settings: Settings,
        *,
        log_dir: Path,
        hosts: list[str] | None = None,
        control: bool = True,
        beat: bool = False,
        loglevel: str = "INFO",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.log_dir = Path(log_dir)
        self.hosts = list(settings.hosts) if hosts is None else hosts
        self.control = control
        self.beat = beat
        self.loglevel = loglevel
        self.env = {**os.environ, **to_env(settings), **(extra_env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.app = make_app(settings)

    def __repr__(self) -> str:
        alive = sorted(n for n, p in self.procs.items() if p.poll() is None)
        return f"<LocalCluster running={alive}>"

    # --- processes -------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = (self.log_dir / f"{name}.log").open("ab")
        cmd = [sys.executable, "-m", "yggcelery", *args]
        self.procs[name] = subprocess.Popen(
            cmd, env=self.env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
        )
        logfile.close()

    def start_worker(self, name: str) -> None:
        self._spawn(name, ["worker", name, "--loglevel", self.loglevel])

    def start(self) -> LocalCluster:
        for host in self.hosts:
            self.start_worker(host)
        if self.control:
            self.start_worker(CONTROL)
        if self.beat:
            schedule = self.log_dir / "beat-schedule"
            self._spawn(
                "beat", ["beat", "--schedule-file", str(schedule), "--loglevel", self.loglevel]
            )
        return self

    def wait_online(self, *, timeout_s: float = 60.0) -> None:
        """Block until every started worker answers a broadcast."""
        wanted = set(self.hosts) | ({CONTROL} if self.control else set())
        deadline = time.monotonic() + timeout_s
        while True:
            online = worker_view(self.app, timeout_s=1.0)[1]
            if wanted <= online:
                return
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not online after {timeout_s}s: {wanted - online}")

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def pool_pids(self, name: str) -> list[int]:
        """The prefork pool processes of worker ``name``."""
        return [child.pid for child in psutil.Process(self.pid(name)).children()]

    def kill_worker(self, name: str, *, sig: int = signal.SIGKILL) -> None:
        """Signal worker ``name``'s whole process group (SIGKILL: it and its pool die at once)."""
        proc = self.procs[name]
        os.killpg(proc.pid, sig)
        proc.wait(timeout=120)

    def restart_worker(self, name: str) -> None:
        if self.procs[name].poll() is None:
            self.kill_worker(name, sig=signal.SIGTERM)
        self.start_worker(name)

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """SIGTERM everything (warm shutdown), then SIGKILL what is left after ``timeout_s``."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
