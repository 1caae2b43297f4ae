"""Cancel that stops the GPU: a person closes, blocks or reopens a bead while its attempt runs.

Revoking a Celery task does not abort an HTTP request in flight (and ``terminate=True`` is a
no-op on some pools), so the model would go on decoding an answer nobody will read. Instead,
whoever sees the change (reconcile, or ``ygg beads close|block|reopen`` at once) raises a flag,
``ygg:cancel:<task id>`` in Redis, and the worker running the attempt watches it
(:func:`watch_cancel`): its model call runs as an asyncio task, which is cancelled, so the HTTP
connection is closed and Ollama or llama.cpp stop decoding and free the slot. The attempt then
ends without a result; nothing is written to Beads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis

from yggcelery.errors import YggError
from yggcelery.ledger import EntryState, Ledger

log = logging.getLogger(__name__)
T = TypeVar("T")

KEY = "ygg:cancel:{task_id}"
#: How long a cancel flag is kept: far longer than any attempt can still be waiting to start.
TTL_S = 24 * 3600


class AttemptCancelled(YggError):
    """Raised when the attempt's bead was changed by a person while it ran; nothing to write."""


def request_cancel(client: redis.Redis, task_id: str) -> None:
    """Flag ``task_id`` as cancelled (idempotent)."""
    client.set(KEY.format(task_id=task_id), "1", ex=TTL_S)


def cancel_bead(ledger: Ledger, bead_id: str) -> str | None:
    """Flag the attempt ``bead_id`` has in flight, if any; returns its task id. What ``ygg beads
    close|block|reopen`` call, so the model stops at once, before reconcile notices."""
    entry = ledger.get(bead_id)
    if entry is None or entry.state is not EntryState.SENT:
        return None
    request_cancel(ledger.client, entry.task_id)
    return entry.task_id


def is_cancelled(client: redis.Redis, task_id: str) -> bool:
    """Whether ``task_id`` is flagged; a Redis that does not answer says no (the work goes on)."""
    try:
        return bool(client.exists(KEY.format(task_id=task_id)))
    except redis.RedisError:
        return False


async def watch_cancel(
    work: Awaitable[T], cancelled: Callable[[], bool], *, every_s: float = 0.25
) -> T:
    """``await work``, but cancel it (and raise :class:`AttemptCancelled`) once ``cancelled()``
    says so; checked every ``every_s``."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every_s)
            if done:
                return task.result()
            if cancelled():
                break
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    raise AttemptCancelled("the bead was changed by a person while its attempt ran")
