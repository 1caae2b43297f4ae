"""Measure how many requests a server runs at once, for servers that do not say (Ollama).

Send ``requests`` equal, short requests at the same moment (threads released together by a
barrier) and time each round trip. A server running P at once answers them in waves: P after
the time one request takes, the next P after about twice that, and so on. The requests that
came back within 1.5 times the fastest round trip are the first wave: P. Half a service time of
slack each way absorbs uneven prompt times, and a CPU server whose batched requests each take P
times as long still shows P in its first wave.

The requests must cost the same, so the round is sent twice and only the second is timed: the
first loads the model and fills each slot's prompt cache (on a real llama-server a cold slot's
prompt took 2 s, a warm one 30 ms, and the midpoint-overlap rule tried first read 4 at once
where 2 ran).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from yggcelery.capacity.reading import Parallelism

#: Asks the server for one short answer; raises the host's error when it fails.
Send = Callable[[], object]
#: Round trips within this many times the fastest one count as the first wave.
FIRST_WAVE = 1.5


def concurrency(round_trips_s: Sequence[float]) -> int:
    """How many requests sent together ran at once, from their round trips (pure)."""
    if not round_trips_s:
        return 0
    limit = FIRST_WAVE * min(round_trips_s)
    return sum(1 for trip in round_trips_s if trip < limit)


def measure(send: Send, *, requests: int) -> Parallelism:
    """Send ``requests`` at once through ``send``, twice, and tell how many ran together.

    An error from any request (busy, refused, timed out) propagates: half a measurement says
    nothing.
    """
    with ThreadPoolExecutor(max_workers=requests, thread_name_prefix="ygg-measure") as pool:
        _round(pool, send, requests)  # warms the model and every slot's prompt cache
        slots = concurrency(_round(pool, send, requests))
    return Parallelism(
        slots=slots,
        how="measured",
        source=f"{slots} of {requests} concurrent requests ran at once",
        at_least=slots >= requests,
    )


def requests_for(slots: int, configured: int) -> int:
    """Requests to send: ``configured`` if set, else twice the slots, at least 2."""
    return configured if configured > 0 else max(2, 2 * slots)


def _round(pool: ThreadPoolExecutor, send: Send, requests: int) -> list[float]:
    """The round trips of ``requests`` sends released at the same moment."""
    start = threading.Barrier(requests, timeout=60)
    return list(pool.map(lambda _: _timed(send, start), range(requests)))


def _timed(send: Send, start: threading.Barrier) -> float:
    start.wait()
    sent = time.monotonic()
    send()
    return time.monotonic() - sent
