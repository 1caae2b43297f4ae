"""Task durations: written when reconcile closes an issue, read when Prometheus scrapes.

The histogram lives in a Redis hash shared by every process that reconciles (beat's job on the
control worker and the dispatcher's own pass), so each closed task is counted once, whoever
closed it. Reconcile itself does not import this module: it reports what it closed, and its
callers (``tasks.reconcile``, ``ygg loop``) record it here.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

import redis
from prometheus_client.core import HistogramMetricFamily

if TYPE_CHECKING:
    from yggcelery.outcomes import BeadResult

#: The duration histogram: ``host<TAB>kind<TAB>i`` counts samples in bucket ``i`` alone (index
#: ``len(DURATION_BUCKETS_S)`` is above the last bound), plus ``...count`` and ``...sum``. The
#: scrape makes the buckets cumulative, so a sample costs three increments, not one per bucket.
DURATION_KEY = "ygg:metrics:task_duration_buckets"
#: Upper bounds (seconds) of the duration histogram: model answers take seconds to minutes.
DURATION_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0)
_SEP = "\t"


def observe_results(client: redis.Redis, results: list[BeadResult]) -> None:
    """The reconcile pass's hook: add the results it has just written into Beads to the shared
    histogram, one increment per field touched, in one transaction."""
    counts: Counter[str] = Counter()
    sums: dict[str, float] = {}
    for result in results:
        host = "cloud" if result.via_cloud else result.host
        kind, seconds = result.kind, max(result.total_s, 0.0)
        prefix = f"{host}{_SEP}{kind}{_SEP}"
        counts[f"{prefix}{bisect.bisect_left(DURATION_BUCKETS_S, seconds)}"] += 1
        counts[f"{prefix}count"] += 1
        sums[f"{prefix}sum"] = sums.get(f"{prefix}sum", 0.0) + seconds
    if not counts:
        return
    with client.pipeline(transaction=True) as pipe:
        for field, n in counts.items():
            pipe.hincrby(DURATION_KEY, field, n)
        for field, total in sums.items():
            pipe.hincrbyfloat(DURATION_KEY, field, total)
        pipe.execute()


class _HashReader(Protocol):
    def hgetall(self, name: str) -> Any: ...


def duration_family(client: _HashReader) -> HistogramMetricFamily:
    """``ygg_task_duration_seconds`` from the shared hash (its buckets made cumulative here)."""
    family = HistogramMetricFamily(
        "ygg_task_duration_seconds",
        "Run time of finished tasks (model answer included), by host and task kind",
        labels=["host", "kind"],
    )
    raw: dict[bytes, bytes] = client.hgetall(DURATION_KEY)
    series: dict[tuple[str, str], dict[str, float]] = {}
    for field, value in raw.items():
        host, kind, part = field.decode().split(_SEP)
        series.setdefault((host, kind), {})[part] = float(value)
    for (host, kind), parts in sorted(series.items()):
        count = parts.get("count", 0.0)
        cumulative = itertools.accumulate(
            parts.get(str(i), 0.0) for i in range(len(DURATION_BUCKETS_S))
        )
        buckets = [(str(b), n) for b, n in zip(DURATION_BUCKETS_S, cumulative, strict=True)]
        family.add_metric(
            [host, kind], buckets=[*buckets, ("+Inf", count)], sum_value=parts.get("sum", 0.0)
        )
    return family
