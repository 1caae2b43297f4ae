"""Re-learning time: a model server restarted with another parallelism, until the cluster knows.

Starts a throwaway Redis, one real llama.cpp ``llama-server`` (SmolLM2-135M on CPU, ``--parallel
3`` where ``hosts.fenrir-chat.slots = 3``) and a real ``ygg worker fenrir-chat`` with
``capacity.probe_s`` at its default (10 s). Each run restarts the server with ``--parallel 1``
and measures from the restart's start (the old server stopping) until ``ygg:capacity:fenrir-chat``
shows a fresh, error-free reading with parallel 1 and effective slots 1 (the drop); then restarts
it with ``--parallel 3`` and measures until it shows 3 again (the recovery). The figure is the
median of the runs; the goal is at most 30 s. The time includes the server's own restart
(``restart_s``: stop, load the model, ``/health`` 200), reported apart. Each restart begins just
after the probe that showed the previous change, so each figure is close to the worst case: the
restart, then most of a probe period until the next probe::

    .venv/bin/python bench/relearn.py [--runs 3] [--sim] [--probe-s 10]

``--sim`` (or no ``llama-server`` installed) uses the simulator's llama.cpp surfaces instead: a
restart is the port closing, the parallelism changing and the port opening again. Prints the
figures and writes them to ``bench/results/relearn.json`` (``relearn-sim.json`` with the
simulator).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import redis

from yggcelery.capacity.live import LiveCapacity, read_capacity
from yggcelery.settings import HostSettings, Settings, load_settings
from yggcelery.sim import SimFleet, SimHost, SimHostConfig
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.llamaserver import LlamaServer, missing, server_version
from yggcelery.testing.redis import RedisServer
from yggcelery.testing.waiting import wait_until

RESULTS = Path(__file__).parent / "results"
HOST = "fenrir-chat"
CONFIGURED = 3
DROPPED = 1
GOAL_S = 30.0
#: Give-up bound for one re-learning (three probe periods past the goal); not the goal.
GIVE_UP_S = 120.0


class Server(Protocol):
    """The model server under test: its address, and a restart with another parallelism."""

    url: str

    def restart(self, *, parallel: int) -> None: ...


@dataclass(frozen=True)
class Transition:
    """One restart: to which parallelism, and how long until the cluster's reading said so."""

    to_parallel: int
    #: Restart start -> the new server answering (stop, start, model loaded).
    restart_s: float
    #: Restart start -> ``ygg:capacity:<host>`` showing the new effective slots.
    relearn_s: float
    #: Restart start -> the probe whose reading showed it (``at`` in the reading).
    probe_s_after_restart: float


class SimServer:
    """The simulator's llama.cpp surfaces; a restart closes the port, resizes, reopens."""

    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.url = host.url

    def restart(self, *, parallel: int) -> None:
        self.host.down()
        self.host.set_parallel(parallel)
        self.host.up()


class LlamaServerAdapter:
    """A real ``llama-server`` restarted with ``--parallel`` changed."""

    def __init__(self, server: LlamaServer) -> None:
        self.server = server
        self.url = server.url

    def restart(self, *, parallel: int) -> None:
        self.server.restart(parallel=parallel)


@contextmanager
def model_server(*, sim: bool, log_dir: Path) -> Iterator[tuple[Server, str]]:
    """A started server with :data:`CONFIGURED` slots, and what it is (for the results)."""
    if sim:
        config = SimHostConfig(name=HOST, model="m", slots=CONFIGURED, server="llamacpp")
        with SimFleet([config]) as fleet:
            yield SimServer(fleet[HOST]), "simulator (llama.cpp surfaces)"
        return
    with LlamaServer(name=HOST, parallel=CONFIGURED, ctx=256, log_dir=log_dir) as server:
        yield LlamaServerAdapter(server), f"llama-server {server_version()}"


def settings_for(redis_server: RedisServer, server: Server, *, probe_s: float) -> Settings:
    """The seed fleet with fenrir-chat served by ``server`` (llama.cpp), probed every probe_s."""
    seed = load_settings().hosts
    host: HostSettings = seed[HOST].model_copy(
        update={"base_url": server.url, "server": "llamacpp", "slots": CONFIGURED}
    )
    return load_settings(
        hosts={**seed, HOST: host},
        broker_url=redis_server.url(0),
        result_backend=redis_server.url(1),
        capacity={"probe_s": probe_s},
        metrics_port=0,
    )


def shows(client: redis.Redis, parallel: int, *, after: float) -> Callable[[], LiveCapacity | None]:
    """A condition: a reading probed after ``after`` (Unix time), read without error, with the
    server at ``parallel`` and the effective slots that follow from it."""
    want = min(parallel, CONFIGURED)

    def check() -> LiveCapacity | None:
        found = read_capacity(client, [HOST])[HOST]
        if found is None or found.error or found.at < after:
            return None
        return found if (found.parallel, found.effective) == (parallel, want) else None

    return check


def transition(server: Server, client: redis.Redis, parallel: int) -> Transition:
    """Restart ``server`` at ``parallel``; time it until the cluster's reading says so."""
    started_wall, started = time.time(), time.monotonic()
    server.restart(parallel=parallel)
    restart_s = time.monotonic() - started
    found = wait_until(
        shows(client, parallel, after=started_wall),
        timeout_s=GIVE_UP_S,
        what=f"ygg:capacity:{HOST} to show parallel {parallel}",
        every_s=0.1,
    )
    relearn_s = time.monotonic() - started
    assert found is not None
    return Transition(parallel, round(restart_s, 2), round(relearn_s, 2),
                      round(found.at - started_wall, 2))  # fmt: skip


def measure(*, runs: int, sim: bool, probe_s: float) -> dict[str, object]:
    """Start everything, make ``runs`` drops and recoveries, and summarise them."""
    with ExitStack() as stack:
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ygg-relearn-")))
        redis_server = stack.enter_context(RedisServer())
        server, what = stack.enter_context(model_server(sim=sim, log_dir=log_dir))
        settings = settings_for(redis_server, server, probe_s=probe_s)
        cluster = stack.enter_context(
            LocalCluster(settings, log_dir=log_dir, hosts=[HOST], control=False)
        )
        cluster.wait_online()
        client = redis.Redis.from_url(settings.result_backend)
        wait_until(shows(client, CONFIGURED, after=0.0), timeout_s=GIVE_UP_S, what="a reading")
        done: list[Transition] = []
        for run in range(runs):
            done.append(transition(server, client, DROPPED))
            done.append(transition(server, client, CONFIGURED))
            print(f"run {run + 1}: drop {done[-2].relearn_s:.1f} s, recovery"
                  f" {done[-1].relearn_s:.1f} s", file=sys.stderr)  # fmt: skip
    return summary(done, server=what, probe_s=probe_s)


def summary(done: list[Transition], *, server: str, probe_s: float) -> dict[str, object]:
    drops = [t.relearn_s for t in done if t.to_parallel == DROPPED]
    recoveries = [t.relearn_s for t in done if t.to_parallel == CONFIGURED]
    median_s = statistics.median(drops)
    return {
        "what": f"restart with --parallel {DROPPED} where slots = {CONFIGURED}, and back,"
        f" until ygg:capacity:{HOST} shows it",
        "server": server,
        "probe_s": probe_s,
        "runs": len(drops),
        "median_s": median_s,
        "max_s": max(drops),
        "recovery_median_s": statistics.median(recoveries),
        "recovery_max_s": max(recoveries),
        "goal_s": GOAL_S,
        "within_goal": max(drops + recoveries) <= GOAL_S,
        "transitions": [asdict(t) for t in done],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sim", action="store_true", help="the simulator, not llama-server")
    parser.add_argument("--probe-s", type=float, default=load_settings().capacity.probe_s)
    args = parser.parse_args()
    sim = args.sim or missing() is not None
    if sim and not args.sim:
        print(f"no llama-server here ({missing()}): using the simulator", file=sys.stderr)
    result = measure(runs=args.runs, sim=sim, probe_s=args.probe_s)
    out = RESULTS / ("relearn-sim.json" if sim else "relearn.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "transitions"}, indent=2))


if __name__ == "__main__":
    main()
