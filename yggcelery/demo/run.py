"""``ygg demo``: the whole system on one machine, with nothing but the virtualenv.

A local Redis on a free port, the three simulated GPU hosts, one ``ygg worker`` per host plus the
control worker and beat (:class:`LocalCluster`), Flower with a generated password, and the
dispatcher (``ygg loop``, a child process, as in production) run a fresh Beads workspace of mixed
issues while a live table shows each host's busy slots and queues. Every process it started is
stopped at the end, on Ctrl+C, SIGTERM, and on errors (one :class:`contextlib.ExitStack`).
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console, RenderableType
from rich.live import Live

from yggcelery.beads import Issue, JsonlStore
from yggcelery.celery_app import make_app
from yggcelery.demo.view import (
    HostLine,
    HostSummary,
    Progress,
    progress_view,
    summary_table,
    waits_by_host,
)
from yggcelery.errors import YggError
from yggcelery.queues import queued_by_priority
from yggcelery.settings import HostSettings, Settings, load_settings, to_env
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.redis import RedisServer, free_port, wait_for_port
from yggcelery.testing.seed import seed_issues

_FINISHED = ("closed", "blocked")
#: ``ygg doctor`` at the end of the run: a few probes of each host and one ping of the workers.
DOCTOR_TIMEOUT_S = 60.0


#: What ``make demo`` lets each seed host do besides its own kind, at what relative speed (the
#: issue's example: fenrir's chat model writes code at 0.7 of skadi's speed; surtr's reasoning
#: model does text at 0.8 and code at 0.7). An operator opts in per host in ygg.toml.
DEMO_OVERFLOW = {
    "fenrir-chat": {"code": 0.7},
    "surtr-reasoning": {"text": 0.8, "code": 0.7},
}
DEMO_OVERFLOW_TEXT = "fenrir-chat code×0.7; surtr-reasoning text×0.8, code×0.7"


def with_demo_overflow(base: Settings) -> Settings:
    """``base`` with :data:`DEMO_OVERFLOW` on the seed hosts it has (validated as any file)."""
    hosts = {
        name: host.model_dump()
        | ({"overflow": DEMO_OVERFLOW[name]} if name in DEMO_OVERFLOW else {})
        for name, host in base.hosts.items()
    }
    return load_settings(hosts=hosts)


class DemoError(YggError):
    """Raised when a part of the demo cluster fails to start or dies during the run."""


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """What ``ygg demo`` was asked for."""

    workspace: Path
    count: int = 30
    #: Real seconds per simulated second on the simulated GPUs.
    time_scale: float = 0.6
    keep: bool = False
    timeout_s: float = 900.0
    config: Path | None = None


class DemoHost(Protocol):
    """What the demo reads of one model host: a simulated one, or a watched real server."""

    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    def status(self) -> dict[str, Any]: ...
    def records(self) -> list[dict[str, Any]]: ...
    def reset(self) -> None: ...


class DemoFleet(Protocol):
    """The demo's model hosts: :class:`SimFleet`, or real llama-servers (``demo.real``)."""

    def __iter__(self) -> Iterator[DemoHost]: ...
    def host_overrides(self) -> dict[str, HostSettings]: ...


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port`` and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Child:
    """One child process in its own session (so a signal reaches its whole group), logged."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "yggcelery", *args],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def __repr__(self) -> str:
        return f"<Child {self.name} pid={self.proc.pid} rc={self.proc.poll()}>"

    def check(self) -> None:
        """Raise :class:`DemoError` with the log's tail if the process has exited."""
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-1500:]
            raise DemoError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout_s``."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl+C, so everything started is stopped."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Demo:
    """One run of the demo; :meth:`run` returns only after everything it started has stopped."""

    def __init__(self, options: DemoOptions, *, console: Console | None = None) -> None:
        self.options = options
        self.console = console or _console()
        self.beads_dir = options.workspace / ".beads"
        self.log_dir = options.workspace / "logs"
        self.password = secrets.token_urlsafe(12)

    def __repr__(self) -> str:
        return f"<Demo workspace={self.options.workspace} count={self.options.count}>"

    def run(self) -> None:
        with _sigterm_as_interrupt(), ExitStack() as stack:
            settings, fleet = self._start(stack)
            issues = self._seed(settings)
            started = time.time()
            progress = self._watch(settings, fleet, stack, ids={i.id for i in issues})
            self._summarise(settings, fleet, issues, started=started, progress=progress)
            self._doctor(settings)
            if self.options.keep:
                self._wait_for_interrupt()

    # --- start --------------------------------------------------------------------------------

    def _start(self, stack: ExitStack) -> tuple[Settings, DemoFleet]:
        self._fresh_workspace()
        base = load_settings(self.options.config)
        say = functools.partial(self.console.print, soft_wrap=True)
        if self.options.config is None:
            base = with_demo_overflow(base)
            say(
                "[bold]Overflow on[/] (demo only; the seed fleet stays pinned):"
                f" {DEMO_OVERFLOW_TEXT}"
            )
        redis = stack.enter_context(RedisServer())
        say(f"[bold]Redis[/] on 127.0.0.1:{redis.port}")
        fleet = self._fleet(base, stack)
        settings = self._settings(base, redis, fleet)
        cluster = LocalCluster(settings, log_dir=self.log_dir, beat=True)
        stack.callback(cluster.stop)
        cluster.start()
        flower = Child("flower", ["flower"], env=cluster.env, log_dir=self.log_dir)
        stack.callback(flower.stop)
        with self.console.status("Starting workers (2/3/2 slots), control worker, beat, Flower"):
            cluster.wait_online(timeout_s=180)
            self._wait_port(flower, settings.flower.port)
        hosts = ", ".join(f"{n} ({h.slots})" for n, h in settings.hosts.items())
        say(f"[bold]Workers online[/]: {hosts}, control, beat")
        say(f"[bold]Flower[/]: {self._flower_url(settings)}  user {settings.flower.user}"
            f"  password {self.password}")  # fmt: skip
        return settings, fleet

    def _fleet(self, base: Settings, stack: ExitStack) -> DemoFleet:
        """The model hosts, started: simulated, on the configured ports when all are free."""
        all_free = all(port_free(h.port) for h in base.hosts.values())
        fleet = SimFleet.from_settings(
            base, time_scale=self.options.time_scale, free_ports=not all_free
        )
        stack.enter_context(fleet)
        self.console.print(
            f"[bold]Simulated hosts[/]: {', '.join(f'{h.name} {h.url}' for h in fleet)}",
            soft_wrap=True,
        )
        return fleet

    def _fresh_workspace(self) -> None:
        for path in (self.beads_dir, self.log_dir):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)

    def _settings(self, base: Settings, redis: RedisServer, fleet: DemoFleet) -> Settings:
        flower = base.flower
        return load_settings(
            self.options.config,
            broker_url=redis.url(0),
            result_backend=redis.url(1),
            hosts=fleet.host_overrides(),
            beads={"dir": str(self.beads_dir.resolve()), "store": "jsonl"},
            dispatch={"poll_s": 0.5, "reconcile_every_s": 2.0, "status_every_s": 30.0},
            cloud={"url": None},
            flower={
                "address": "127.0.0.1",
                "port": flower.port if port_free(flower.port) else free_port(),
                "user": flower.user,
                "password": self.password,
            },
            metrics_port=base.metrics_port if port_free(base.metrics_port) else free_port(),
        )

    def _wait_port(self, child: Child, port: int) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            child.check()
            try:
                wait_for_port(port, timeout_s=1.0)
                return
            except TimeoutError:
                continue
        raise DemoError(f"{child.name} does not listen on 127.0.0.1:{port} (see {child.log_path})")

    def _seed(self, settings: Settings) -> list[Issue]:
        store = JsonlStore(settings.beads.jsonl_path)
        issues = seed_issues(store, count=self.options.count, dependency_every=6)
        self.console.print(
            f"[bold]Beads[/]: {len(issues)} issues in {settings.beads.jsonl_path}"
            " (code, text and reasoning work, priorities 0..4, a few dependencies)",
            soft_wrap=True,
        )
        return issues

    # --- run ----------------------------------------------------------------------------------

    def _watch(
        self, settings: Settings, fleet: DemoFleet, stack: ExitStack, *, ids: set[str]
    ) -> Progress:
        for host in fleet:
            host.reset()
        dispatcher = Child("dispatcher", ["loop"], env=_env(settings), log_dir=self.log_dir)
        stack.callback(dispatcher.stop)
        app, store = make_app(settings), JsonlStore(settings.beads.jsonl_path)
        started = time.monotonic()
        progress = self._progress(
            settings=settings, fleet=fleet, app=app, store=store, ids=ids, started=started
        )
        with Live(progress_view(progress), console=self.console, refresh_per_second=4) as live:
            while progress.done < progress.total:
                dispatcher.check()
                if time.monotonic() - started > self.options.timeout_s:
                    raise DemoError(f"not finished after {self.options.timeout_s:.0f} s"
                                    f" (logs in {self.log_dir})")  # fmt: skip
                time.sleep(0.25)
                progress = self._progress(
                    settings=settings, fleet=fleet, app=app, store=store, ids=ids, started=started
                )
                live.update(progress_view(progress))
        self.console.print()
        return progress

    def _progress(
        self,
        *,
        settings: Settings,
        fleet: DemoFleet,
        app: Any,
        store: JsonlStore,
        ids: set[str],
        started: float,
    ) -> Progress:
        issues = [i for i in store.list_issues() if i.id in ids]
        queued = queued_by_priority(app, settings, list(settings.hosts))
        lines = []
        for host in fleet:
            status = host.status()
            lines.append(HostLine(host.name, status["slots"], status["busy_slots"],
                                  queued[host.name], status["served"]))  # fmt: skip
        return Progress(
            hosts=lines,
            done=sum(1 for i in issues if i.status in _FINISHED),
            total=len(ids),
            elapsed_s=time.monotonic() - started,
            ready_in_beads=sum(1 for i in store.ready() if i.id in ids),
        )

    # --- end ----------------------------------------------------------------------------------

    def _summarise(
        self,
        settings: Settings,
        fleet: DemoFleet,
        issues: list[Issue],
        *,
        started: float,
        progress: Progress,
    ) -> None:
        store = JsonlStore(settings.beads.jsonl_path)
        final = {i.id: i for i in store.list_issues()}
        ready_at = {i.id: _ready_at(i, final, started) for i in issues}
        priority_of = {i.id: i.priority for i in issues}
        records = [r for host in fleet for r in host.records()]
        waits = waits_by_host(records, priority_of=priority_of, ready_at=ready_at)
        hosts = []
        for host in fleet:
            status = host.status()
            served = [r for r in host.records() if r["status"] == 200]
            hosts.append(HostSummary(host.name, status["slots"], len(served),
                                     status["utilisation"], waits.get(host.name, [])))  # fmt: skip
        say = functools.partial(self.console.print, soft_wrap=True)
        self.console.print(self._summary_table(hosts))
        closed = sum(1 for i in issues if final[i.id].status == "closed")
        blocked = sum(1 for i in issues if final[i.id].status == "blocked")
        say(f"[bold]{closed} of {len(issues)} issues closed[/], {blocked} blocked,"
            f" in {progress.elapsed_s:.1f} s")  # fmt: skip
        path = settings.beads.jsonl_path
        say(f"Results: {path}")
        say(f"  one of them: ygg beads show {issues[0].id} --beads-file {path}")
        say(f"Flower: {self._flower_url(settings)}  user {settings.flower.user}  password"
            f" {self.password}" + ("" if self.options.keep else "  (stopped with the demo;"
                                   " `ygg demo --keep` keeps it running)"))  # fmt: skip
        say(f"Logs: {self.log_dir}")

    def _doctor(self, settings: Settings) -> None:
        """``ygg doctor`` on the running cluster, a new user's first command on a real fleet:
        its verdict here, its lines in the logs."""
        ran = subprocess.run(
            [sys.executable, "-m", "yggcelery", "doctor"], env=_env(settings),
            capture_output=True, text=True, timeout=DOCTOR_TIMEOUT_S, check=False,
        )  # fmt: skip
        (self.log_dir / "doctor.log").write_text(ran.stdout + ran.stderr)
        checks = [line for line in ran.stdout.splitlines() if line.startswith(("ok", "FAIL"))]
        failing = [line for line in checks if line.startswith("FAIL")]
        say = functools.partial(self.console.print, soft_wrap=True, markup=False)
        if ran.returncode == 0:
            say(f"ygg doctor on this cluster: all {len(checks)} checks pass"
                f" ({self.log_dir / 'doctor.log'})")  # fmt: skip
            return
        say(f"ygg doctor on this cluster: {len(failing)} of {len(checks)} checks fail:")
        for line in failing or ran.stderr.splitlines()[-1:]:
            say(f"  {line}")

    def _summary_table(self, hosts: list[HostSummary]) -> RenderableType:
        return summary_table(hosts, time_scale=self.options.time_scale)

    def _wait_for_interrupt(self) -> None:
        self.console.print(
            "[bold]--keep[/]: the cluster keeps running. Ctrl+C stops it.", soft_wrap=True
        )
        while True:
            time.sleep(3600)

    @staticmethod
    def _flower_url(settings: Settings) -> str:
        return f"http://{settings.flower.address}:{settings.flower.port}/"


def _console() -> Console:
    """The terminal's console; 120 columns when the output goes to a file or a pipe."""
    console = Console()
    return console if console.is_terminal else Console(width=120)


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **to_env(settings)}


def _ready_at(issue: Issue, final: dict[str, Issue], started: float) -> float:
    """When ``issue`` became ready: the start, or its last blocker's close."""
    times = [started]
    for dep in issue.dependencies:
        blocker = final.get(dep.depends_on_id)
        if blocker is not None and blocker.closed_at is not None:
            times.append(blocker.closed_at.timestamp())
    return max(times)
