"""One dispatcher in a process of its own: ``python -m yggcelery.bench.run_dispatcher NAME``.

Settings come from ``$YGG_CONFIG`` (the runner writes one per run). The process builds and
prepares its dispatcher (connections open, as in a ``ygg loop`` that has been running), prints
``ready <cpu_s> <ctx_switches>`` (its usage so far, so the runner can subtract start-up costs),
waits for a line on stdin (the runner's "go", sent once the scenario's first beads are in
Beads), prints ``started <time.time()>`` (the scenario's t0: start-up and pipe delays are not
the dispatcher's schedule), then runs the dispatcher's own loop until SIGTERM,
which hands back anything not finished, as ``ygg loop`` does.
"""

from __future__ import annotations

import logging
import resource
import sys
import time

from yggcelery.beads import open_store
from yggcelery.dispatch.choose import make_dispatcher
from yggcelery.settings import load_settings


def usage() -> tuple[float, int]:
    """CPU seconds (user + system) and context switches of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_nvcsw + ru.ru_nivcsw


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            "usage: python -m yggcelery.bench.run_dispatcher celery|asyncio|legacy", file=sys.stderr
        )
        return 2
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = load_settings()
    dispatcher = make_dispatcher(args[0], settings, open_store(settings))
    dispatcher.prepare()  # connections are made before t0, as a running `ygg loop` has them
    cpu_s, switches = usage()
    print(f"ready {cpu_s:.4f} {switches}", flush=True)
    if not sys.stdin.readline():
        dispatcher.shutdown(hand_back=True)
        return 1
    print(f"started {time.time():.6f}", flush=True)
    dispatcher.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
