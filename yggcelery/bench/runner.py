"""One benchmark run: a scenario through one dispatcher, on a fresh simulator and Beads file.

For each run: a folder of its own with a new ``.beads/issues.jsonl``; the configured hosts moved
to free loopback ports; ``ygg sim --time-scale S`` serving them; for Celery a fresh Redis and a
:class:`~yggcelery.testing.cluster.LocalCluster`; the dispatcher in its own process. The scenario's
first beads are written, the dispatcher is told to go (``t0``), later beads are created at their
arrival times, and when every bead is closed (or blocked) the dispatcher is stopped and the
simulator's records are turned into figures (:mod:`yggcelery.bench.metrics`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yggcelery.beads import BeadsStore, Issue, JsonlStore
from yggcelery.bench import metrics
from yggcelery.bench.bound import bounds, hosts_of
from yggcelery.bench.processes import DispatcherProcess, SimProcess, Usage
from yggcelery.bench.scenarios import BenchTask, Scenario
from yggcelery.settings import BeadsSettings, CloudSettings, Settings
from yggcelery.testing.redis import RedisServer, free_port

log = logging.getLogger(__name__)

DISPATCHERS = ("legacy", "asyncio", "celery")
DONE = ("closed", "blocked")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How runs are made: the time scale and the dispatchers' poll and Beads-watch intervals
    (simulated seconds)."""

    time_scale: float = 0.1
    poll_sim_s: float = 0.5
    watch_sim_s: float = 0.1
    #: Simulated seconds allowed beyond the scenario's total service time before giving up.
    slack_sim_s: float = 120.0


def run_settings(
    base: Settings, *, workdir: Path, options: RunOptions, broker_url: str | None
) -> Settings:
    """``base`` with hosts on free ports, a fresh Beads folder, the bench's poll, no cloud."""
    hosts = {
        name: host.model_copy(update={"base_url": f"http://127.0.0.1:{free_port()}"})
        for name, host in base.hosts.items()
    }
    poll_s = max(options.poll_sim_s * options.time_scale, 0.005)
    watch_s = max(options.watch_sim_s * options.time_scale, 0.005)
    update: dict[str, Any] = {
        "hosts": hosts,
        "beads": BeadsSettings(dir=workdir / ".beads", store="jsonl", actor=base.beads.actor),
        "dispatch": base.dispatch.model_copy(
            update={
                "poll_s": poll_s,
                "watch_s": watch_s,
                "reconcile_every_s": poll_s,
                "status_every_s": 5.0,
            }
        ),
        "sim": base.sim.model_copy(update={"time_scale": options.time_scale}),
        "cloud": CloudSettings(),
    }
    if broker_url is not None:
        update["broker_url"] = broker_url
        update["result_backend"] = broker_url.rsplit("/", 1)[0] + "/1"
    return base.model_copy(update=update)


def run_one(
    scenario: Scenario, dispatcher: str, *, base: Settings, options: RunOptions, workdir: Path
) -> dict[str, Any]:
    """Run ``scenario`` through ``dispatcher``; the figures of the run (see :func:`summarise`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        broker = None
        if dispatcher == "celery":
            broker = stack.enter_context(RedisServer()).url(0)
        settings = run_settings(
            scenario.settings_for(base, time_scale=options.time_scale),
            workdir=workdir,
            options=options,
            broker_url=broker,
        )
        settings.beads.dir.mkdir(parents=True, exist_ok=True)
        store = JsonlStore(settings.beads.jsonl_path)
        sim = stack.enter_context(
            SimProcess(settings, time_scale=options.time_scale, workdir=workdir)
        )
        if dispatcher == "celery":
            stack.enter_context(cluster(settings, workdir))
        proc = DispatcherProcess(dispatcher, settings, workdir=workdir)
        stack.callback(proc.kill)
        proc.start()
        fed = feed(scenario, store, proc, settings=settings, options=options)
        usage = proc.stop()
        records = [r for rows in sim.fetch("/sim/records").values() for r in rows]
    log.info("%s/%s: done (timed out: %s)", scenario.name, dispatcher, fed.timed_out)
    return summarise(scenario, fed, records, usage=usage, settings=settings, options=options)


@contextmanager
def cluster(settings: Settings, workdir: Path) -> Iterator[None]:
    from yggcelery.testing.cluster import LocalCluster

    with LocalCluster(settings, log_dir=workdir / "cluster", loglevel="WARNING") as cluster:
        cluster.wait_online(timeout_s=120.0)
        yield


@dataclass
class Feed:
    """What the runner did: when the scenario started, and when each bead arrived (wall clock)."""

    t0: float
    tasks: dict[str, BenchTask]
    arrivals: dict[str, float]
    statuses: dict[str, str]
    timed_out: bool
    #: When the last bead was closed or blocked, by Beads' own timestamps (wall clock; not when
    #: the runner's next check happened to see it).
    done_at: float = 0.0


def _create(store: BeadsStore, task: BenchTask, *, actor: str, hint_scale: float | None) -> str:
    issue = store.create(
        task.title,
        priority=task.priority,
        issue_type="task",
        labels=task.labels(),
        description=f"Benchmark bead {task.key}: {task.kind}, {task.service_s:g} simulated s.",
        metadata=task.metadata(hint_scale=hint_scale),
        actor=actor,
    )
    return issue.id


def feed(
    scenario: Scenario,
    store: BeadsStore,
    proc: DispatcherProcess,
    *,
    settings: Settings,
    options: RunOptions,
) -> Feed:
    """Create the beads at their arrival times and wait until all are closed or blocked."""
    scale, actor = options.time_scale, "bench"
    hint = scale if scenario.hints else None
    first = min(t.arrival_s for t in scenario.tasks)
    later = sorted((t for t in scenario.tasks if t.arrival_s > first), key=lambda t: t.arrival_s)
    tasks = {
        _create(store, t, actor=actor, hint_scale=hint): t
        for t in scenario.tasks
        if t.arrival_s == first
    }
    t0 = proc.go()
    arrivals = dict.fromkeys(tasks, t0)
    deadline = t0 + (scenario.total_service_s + options.slack_sim_s) * scale + 60.0
    check_s = min(max(0.5 * scale, 0.05), 0.5)
    statuses: dict[str, str] = {}
    while True:
        while later and time.time() >= t0 + (later[0].arrival_s - first) * scale:
            task = later.pop(0)
            bead = _create(store, task, actor=actor, hint_scale=hint)
            tasks[bead], arrivals[bead] = task, time.time()
        issues = [i for i in store.list_issues() if i.id in tasks]
        statuses = {i.id: i.status for i in issues}
        if not later and all(s in DONE for s in statuses.values()):
            done_at = max(_finished_at(i) for i in issues)
            return Feed(t0, tasks, arrivals, statuses, timed_out=False, done_at=done_at)
        if time.time() > deadline or not proc.alive():
            pending = {b: s for b, s in statuses.items() if s not in DONE}
            log.warning(
                "%s: stopped waiting; %d bead(s) not done, e.g. %s (dispatcher log: %s)",
                scenario.name,
                len(pending),
                dict(list(pending.items())[:5]),
                proc.log_tail(500),
            )
            return Feed(t0, tasks, arrivals, statuses, timed_out=True)
        time.sleep(check_s)


def _finished_at(issue: Issue) -> float:
    """When a closed or blocked bead got there (its last Beads write), as a Unix time."""
    stamp = issue.closed_at or issue.updated_at
    return stamp.timestamp() if stamp is not None else time.time()


def summarise(
    scenario: Scenario,
    feed: Feed,
    records: list[dict[str, Any]],
    *,
    usage: Usage,
    settings: Settings,
    options: RunOptions,
) -> dict[str, Any]:
    """The run's figures, in simulated seconds (see :mod:`yggcelery.bench.metrics`)."""
    scale = options.time_scale
    priorities = {bead: task.priority for bead, task in feed.tasks.items()}
    served = metrics.served_requests(records, beads=priorities)
    finish = max((s.finished for s in served), default=feed.t0)
    makespan = (finish - feed.t0) / scale
    both = bounds(
        list(scenario.tasks), hosts_of(settings), default_kind=settings.routing.default_kind
    )
    waits = metrics.waits_s(served, arrivals=feed.arrivals, time_scale=scale)
    slots = {n: h.slots for n, h in settings.hosts.items()}
    p0 = [w for b, w in waits.items() if priorities[b] == 0]
    requests = [r for r in records if r.get("bead") in priorities]
    return {
        "makespan_s": round(makespan, 3),
        **both.figures(makespan),
        "utilization": metrics.utilisation(
            served, slots=slots, makespan_s=makespan, time_scale=scale
        ),
        "p0_wait_s": round(max(p0), 3) if p0 else None,
        "wait_by_priority_s": metrics.wait_by_priority(waits, priorities),
        "queue_depth": metrics.queue_depth(
            served, arrivals=feed.arrivals, t0=feed.t0, time_scale=scale
        ),
        "host_concurrency": metrics.host_concurrency(served),
        **metrics.schedule_figures(
            served, arrivals=feed.arrivals, priorities=priorities, slots=slots, time_scale=scale
        ),
        "peak_rss_mib": usage.peak_rss_mib,
        "cpu_s": usage.cpu_s,
        "ctx_switches": usage.ctx_switches,
        "beads": len(feed.tasks),
        "closed": sum(1 for s in feed.statuses.values() if s == "closed"),
        "blocked": sum(1 for s in feed.statuses.values() if s == "blocked"),
        "requests": len(requests),
        "timed_out": feed.timed_out,
        "timeline": [
            {
                "host": s.host,
                "slot": s.slot,
                "priority": s.priority,
                "bead": s.bead,
                "start_s": round((s.started - feed.t0) / scale, 3),
                "end_s": round((s.finished - feed.t0) / scale, 3),
            }
            for s in served
        ],
    }
