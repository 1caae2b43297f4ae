"""The child processes of one benchmark run: the simulator and the dispatcher under test.

Both get the run's settings as ``YGG_*`` variables (:func:`~yggcelery.settings.to_env`) and run
in the run's own folder. The dispatcher's resource use is read with ``os.wait4`` when it exits:
peak RSS, CPU seconds and context switches of that process alone; its start-up (imports, the
first connections) is subtracted from the CPU and switch counts.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from yggcelery.settings import Settings, to_env
from yggcelery.testing.redis import wait_for_port

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Usage:
    """What the dispatcher process used while it ran the scenario."""

    peak_rss_mib: float
    cpu_s: float
    ctx_switches: int
    exit_code: int


def child_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YGG_")}
    return {**env, **to_env(settings)}


class SimProcess:
    """``ygg sim`` for the run's hosts, in the foreground of a child process."""

    def __init__(self, settings: Settings, *, time_scale: float, workdir: Path) -> None:
        self.settings = settings
        self.time_scale = time_scale
        self.log_path = workdir / "sim.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SimProcess:
        cmd = [sys.executable, "-m", "yggcelery", "sim", "--time-scale", repr(self.time_scale)]
        with self.log_path.open("wb") as logfile:
            self.proc = subprocess.Popen(
                cmd,
                env=child_env(self.settings),
                cwd=self.log_path.parent,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for host in self.settings.hosts.values():
            wait_for_port(host.port, timeout_s=30.0)
        return self

    def fetch(self, path: str) -> dict[str, Any]:
        """``GET path`` on every host: ``{host: parsed JSON}``."""
        with httpx.Client(timeout=10.0) as client:
            return {
                name: client.get(f"{host.base_url}{path}").json()
                for name, host in self.settings.hosts.items()
            }

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout_s=10.0)


class DispatcherProcess:
    """``python -m yggcelery.bench.run_dispatcher NAME``: started, told to go, stopped."""

    def __init__(self, name: str, settings: Settings, *, workdir: Path) -> None:
        self.name = name
        self.settings = settings
        self.log_path = workdir / f"dispatcher-{name}.log"
        self.proc: subprocess.Popen[str] | None = None
        self._startup = (0.0, 0)

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Start the process and wait until its dispatcher is built."""
        cmd = [sys.executable, "-m", "yggcelery.bench.run_dispatcher", self.name]
        with self.log_path.open("w") as logfile:
            self.proc = subprocess.Popen(
                cmd,
                env=child_env(self.settings),
                cwd=self.log_path.parent,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logfile,
                text=True,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()  # blocks; the child prints it or dies
        if len(line) != 3 or line[0] != "ready":
            raise RuntimeError(f"dispatcher {self.name} did not start:\n{self.log_tail()}")
        self._startup = (float(line[1]), int(line[2]))

    def go(self) -> float:
        """Tell the dispatcher to start; the wall-clock time its loop began."""
        assert self.proc is not None and self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "started":
            raise RuntimeError(f"dispatcher {self.name} did not start:\n{self.log_tail()}")
        return float(line[1])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, timeout_s: float = 60.0) -> Usage:
        """SIGTERM (the dispatcher hands back what is unfinished), reap, and read its usage."""
        assert self.proc is not None
        peak_kib = _peak_rss_kib(self.proc.pid)
        os.kill(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(self.proc.pid, signal.SIGKILL)
                pid, status, ru = os.wait4(self.proc.pid, 0)
                break
            time.sleep(0.02)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        cpu0, switches0 = self._startup
        return Usage(
            peak_rss_mib=round((peak_kib or ru.ru_maxrss) / 1024, 1),  # both KiB on Linux
            cpu_s=round(ru.ru_utime + ru.ru_stime - cpu0, 3),
            ctx_switches=ru.ru_nvcsw + ru.ru_nivcsw - switches0,
            exit_code=self.proc.returncode,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            stop_group(self.proc, timeout_s=5.0)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _peak_rss_kib(pid: int) -> int | None:
    """The process's peak RSS since its exec (``VmHWM``), in KiB; None where /proc has none.

    ``ru_maxrss`` from ``wait4`` is no good here: a forked child starts with its parent's
    high-water mark, so it reports the runner's size, not the dispatcher's.
    """
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def stop_group(proc: subprocess.Popen[Any], *, timeout_s: float) -> None:
    """SIGTERM ``proc``'s process group, SIGKILL it after ``timeout_s``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
