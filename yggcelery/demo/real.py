"""``make demo-real``: the demo's whole cluster on real llama.cpp servers instead of simulated ones.

One ``llama-server`` with SmolLM2-135M on CPU stands in for each configured host, started with as
many slots (``--parallel``) as the host has (2/3/2 for surtr, fenrir and skadi); everything else
is ``ygg demo``'s (:class:`~yggcelery.demo.run.Demo`): Redis, a worker per host, the control
worker, beat, Flower, the dispatcher and a fresh Beads workspace, here of a dozen issues. Answers
are capped at ``n_predict`` tokens so the run takes a couple of minutes on two cores. Each
server's ``/slots`` is sampled a few times a second: the live table shows the busy slots, and the
summary the share of slot time spent decoding, the peak of busy slots, and the tokens served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import click
import httpx
from rich.console import RenderableType

from yggcelery.beads import Issue, JsonlStore
from yggcelery.demo.run import Demo, DemoFleet, DemoOptions
from yggcelery.demo.view import HostSummary, Progress, summary_table
from yggcelery.errors import YggError
from yggcelery.outcomes import TASK_MARKER
from yggcelery.settings import HostSettings, Settings
from yggcelery.testing.llamaserver import LlamaFleet, LlamaServer, server_version

log = logging.getLogger(__name__)

#: How often each server's ``/slots`` is read.
SAMPLE_EVERY_S = 0.2


@dataclass(frozen=True, kw_only=True)
class RealOptions:
    """The model side of ``make demo-real``."""

    #: Longest answer, in tokens, for requests that set none (the workers set none).
    n_predict: int = 48
    #: Context of each slot, in tokens.
    ctx: int = 1024
    #: CPU threads per server.
    threads: int = 1


class WatchedServer:
    """One real server as the demo sees a host: busy slots now, tasks done, busy share of slots.

    Built from samples of ``/slots``: a slot's task is done when the slot stops processing it. A
    request that starts and ends between two samples is not counted (rare at 0.2 s).
    """

    def __init__(self, server: LlamaServer) -> None:
        self.server = server
        self._lock = threading.Lock()
        self.reset()

    def __repr__(self) -> str:
        return f"<WatchedServer {self.name} busy={len(self._busy)}/{self.server.parallel}>"

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def url(self) -> str:
        return self.server.url

    def reset(self) -> None:
        with self._lock:
            self._since = self._last = time.monotonic()
            self._busy: dict[int, tuple[int, float]] = {}  # slot id -> (task id, first seen)
            self._records: list[dict[str, Any]] = []
            self._busy_slot_s = 0.0
            self.peak = 0

    def sample(self) -> None:
        """Read ``/slots`` once; a server that does not answer leaves the figures as they are."""
        try:
            slots = self.server.slots()
        except httpx.HTTPError as exc:
            log.debug("llama-server %s: /slots unreadable (%s)", self.name, exc)
            return
        now = time.monotonic()
        running = {int(s["id"]): int(s.get("id_task", -1)) for s in slots if s.get("is_processing")}
        with self._lock:
            self._busy_slot_s += len(self._busy) * (now - self._last)
            self._last = now
            for slot, (task, first_seen) in list(self._busy.items()):
                if running.get(slot) != task:
                    del self._busy[slot]
                    self._records.append({"host": self.name, "status": 200, "task": task,
                                          "started": first_seen, "finished": now})  # fmt: skip
            for slot, task in running.items():
                self._busy.setdefault(slot, (task, now))
            self.peak = max(self.peak, len(self._busy))

    def status(self) -> dict[str, Any]:
        """What the demo's table reads of a simulated host, for this real one."""
        with self._lock:
            span_s = max(self._last - self._since, 1e-9)
            return {
                "slots": self.server.parallel,
                "busy_slots": len(self._busy),
                "served": len(self._records),
                "utilisation": self._busy_slot_s / (self.server.parallel * span_s),
            }

    def records(self) -> list[dict[str, Any]]:
        """One record per finished task; no bead (the server does not know it), so no waits."""
        with self._lock:
            return list(self._records)


class RealFleet:
    """A started :class:`LlamaFleet`, its servers sampled from a background thread."""

    def __init__(self, fleet: LlamaFleet, *, every_s: float = SAMPLE_EVERY_S) -> None:
        self.fleet = fleet
        self.watched = [WatchedServer(server) for server in fleet]
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="llama-slots", daemon=True)

    def __repr__(self) -> str:
        return f"<RealFleet {self.fleet!r}>"

    def __iter__(self) -> Iterator[WatchedServer]:
        return iter(self.watched)

    def host_overrides(self) -> dict[str, HostSettings]:
        return self.fleet.host_overrides()

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            for watched in self.watched:
                watched.sample()

    def __enter__(self) -> RealFleet:
        self.fleet.start()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.fleet.stop()


class RealDemo(Demo):
    """``ygg demo`` with real llama-servers as the hosts; :attr:`closed` counts closed issues."""

    def __init__(self, options: DemoOptions, real: RealOptions | None = None) -> None:
        super().__init__(options)
        self.real = real or RealOptions()
        self.closed = 0
        self._fleet_started: RealFleet | None = None

    def _fleet(self, base: Settings, stack: ExitStack) -> DemoFleet:
        llama = LlamaFleet.from_settings(
            base,
            ctx=self.real.ctx,
            threads=self.real.threads,
            n_predict=self.real.n_predict,
            log_dir=self.log_dir,
        )
        with self.console.status("Starting llama-servers (SmolLM2-135M, CPU)"):
            fleet = stack.enter_context(RealFleet(llama))
        self._fleet_started = fleet
        servers = ", ".join(f"{s.name} {s.url} (-np {s.parallel})" for s in llama)
        self.console.print(
            f"[bold]llama-servers[/] ({server_version()}): {servers}", soft_wrap=True
        )
        return fleet

    def _summary_table(self, hosts: list[HostSummary]) -> RenderableType:
        table = summary_table(hosts, time_scale=1.0)
        table.caption = (
            "real llama-servers (SmolLM2-135M on CPU); busy: share of slot time decoding,"
            f" sampled from /slots every {SAMPLE_EVERY_S:g} s; no waits (no bead in /slots)"
        )
        return table

    def _summarise(
        self,
        settings: Settings,
        fleet: DemoFleet,
        issues: list[Issue],
        *,
        started: float,
        progress: Progress,
    ) -> None:
        watched = list(self._fleet_started or [])
        for server in watched:  # the last tasks' ends, which the sampler may not have seen yet
            server.sample()
        super()._summarise(settings, fleet, issues, started=started, progress=progress)
        final = {i.id: i for i in JsonlStore(settings.beads.jsonl_path).list_issues()}
        self.closed = sum(1 for i in issues if final[i.id].status == "closed")
        say = self.console.print
        for server in watched:
            tokens = server.server.metrics().get("llamacpp:tokens_predicted_total", 0)
            status = server.status()
            say(f"  {server.name}: {status['served']} tasks, {tokens:.0f} tokens predicted,"
                f" slots busy {100 * status['utilisation']:.0f} % of the time,"
                f" peak {server.peak}/{status['slots']} slots at once")  # fmt: skip
        answer = next((a for i in issues if (a := model_answer(final[i.id]))), None)
        if answer:
            say(f"One real answer, {answer[0]}: [italic]{answer[1]}[/]", soft_wrap=True)


def model_answer(issue: Issue) -> tuple[str, str] | None:
    """(issue id, the start of the model's answer) from the issue's result comment, if any."""
    for comment in issue.comments:
        text = comment.text or ""
        if TASK_MARKER in text:
            body = text.split("\n---\n", 1)[0].strip()
            return issue.id, " ".join(body.split())[:200]
    return None


@click.command()
@click.option("--count", type=click.IntRange(1, 200), default=12, show_default=True,
              help="Issues in the demo workspace.")  # fmt: skip
@click.option("--n-predict", type=click.IntRange(1, 4096), default=48, show_default=True,
              help="Longest answer in tokens.")  # fmt: skip
@click.option("--timeout", "timeout_s", type=float, default=600.0, show_default=True,
              help="Give up (and stop everything) after this many seconds.")  # fmt: skip
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".ygg/demo-real"), show_default=True,
              help="The demo's Beads file and logs (recreated on each run).")  # fmt: skip
@click.option("--keep", is_flag=True, help="Leave the cluster running until Ctrl+C.")
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A ygg.toml for the hosts (default: the seed fleet).")  # fmt: skip
def main(
    *,
    count: int,
    n_predict: int,
    timeout_s: float,
    workspace: Path,
    keep: bool,
    config: Path | None,
) -> None:
    """Run the whole cluster on real llama-servers (SmolLM2-135M) for a few issues, then stop it.

    Exits 1 unless every issue was closed with the model's answer.
    """
    options = DemoOptions(workspace=workspace.resolve(), count=count, timeout_s=timeout_s,
                          keep=keep, config=config)  # fmt: skip
    demo = RealDemo(options, RealOptions(n_predict=n_predict))
    try:
        demo.run()
    except KeyboardInterrupt:
        click.echo("Interrupted: every process the demo started has been stopped.", err=True)
        raise SystemExit(130) from None
    except YggError as exc:
        raise SystemExit(f"demo-real: error: {exc}") from None
    if demo.closed < count:
        raise SystemExit(f"demo-real: only {demo.closed} of {count} issues closed")


if __name__ == "__main__":
    main()
