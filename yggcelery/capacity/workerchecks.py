"""Doctor checks of the Celery workers, asked directly (``app.control.inspect()``).

Flower's ``/api/workers`` can answer ``{}`` for a minute with every worker up, until
``?refresh=1``; a broadcast ``stats`` + ``active_queues`` gets each worker's own answer at once.
Each host needs a worker consuming its queue and nothing else, with concurrency = its slots; the
control queue needs one, or beat's reconcile never runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from yggcelery.capacity.check import Check, failed, passed
from yggcelery.settings import HostSettings, Settings

Stats = Mapping[str, Mapping[str, Any]]
Queues = Mapping[str, Sequence[Mapping[str, Any]]]


def check_workers(app: Celery, settings: Settings, *, timeout_s: float = 2.0) -> list[Check]:
    """Ask every worker for its pool and queues, and check them against the hosts."""
    inspect = app.control.inspect(timeout=timeout_s)
    try:
        stats, queues = inspect.stats() or {}, inspect.active_queues() or {}
    except (OSError, OperationalError) as exc:
        reason = " ".join(str(exc).split())
        return [failed("workers", f"cannot ask the workers ({reason})", "fix the broker first")]
    return worker_checks(settings, stats, queues, timeout_s=timeout_s)


def worker_checks(
    settings: Settings, stats: Stats, queues: Queues, *, timeout_s: float = 2.0
) -> list[Check]:
    """The worker checks from the workers' answers (pure)."""
    if not stats:
        return [
            failed(
                "workers",
                f"no worker answered within {timeout_s:g}s",
                "start `ygg worker <host>` for each host and `ygg worker control`",
            )
        ]
    consumed = _consumers(queues)
    checks = [
        _host_worker(name, host, consumed.get(name, []), stats, queues)
        for name, host in settings.hosts.items()
    ]
    control = consumed.get(settings.control_queue, [])
    if control:
        checks.append(
            passed("worker control", f"{', '.join(control)} consumes {settings.control_queue}")
        )
    else:
        checks.append(
            failed(
                "worker control",
                f"no worker consumes {settings.control_queue}: beat's reconcile never runs",
                "run `ygg worker control` on the machine that holds the Beads data",
            )
        )
    return checks


def _host_worker(
    name: str, host: HostSettings, workers: list[str], stats: Stats, queues: Queues
) -> Check:
    title = f"worker {name}"
    if not workers:
        return failed(title, f"no worker consumes queue {name}", f"run `ygg worker {name}`")
    problems = []
    for worker in workers:
        concurrency = stats.get(worker, {}).get("pool", {}).get("max-concurrency")
        if concurrency != host.slots:
            problems.append(f"{worker} runs {concurrency} at once, slots = {host.slots}")
        others = sorted(_names(queues.get(worker, ())) - {name})
        if others:
            problems.append(f"{worker} also consumes {', '.join(others)}")
    if problems:
        return failed(
            title, "; ".join(problems), f"restart it as `ygg worker {name}` (concurrency = slots)"
        )
    return passed(title, f"{', '.join(workers)} consumes {name} with concurrency {host.slots}")


def _consumers(queues: Queues) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for worker, entries in sorted(queues.items()):
        for queue in sorted(_names(entries)):
            out.setdefault(queue, []).append(worker)
    return out


def _names(entries: Sequence[Mapping[str, Any]]) -> set[str]:
    return {str(e["name"]) for e in entries if isinstance(e, Mapping) and "name" in e}
