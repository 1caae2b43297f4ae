"""What is in the broker right now: queue depth per priority level, and which task ids are there.

On Redis, kombu keeps one list per priority level (``skadi-code``, ``skadi-code:1`` ..
``skadi-code:4`` with ``sep=':'``) and the messages delivered to a worker but not yet acknowledged
in the ``unacked`` hash; both can be read directly. RabbitMQ only reports a count per queue, and
the ids of queued messages cannot be listed, so :func:`task_ids` answers None there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery

from yggcelery.priority import PRIORITIES
from yggcelery.settings import Settings

#: kombu's Redis hash of delivered, unacknowledged messages (``[message, exchange, key]``).
UNACKED_KEY = "unacked"


def priority_keys(queue: str) -> dict[str, str]:
    """Redis list of each priority level of ``queue``, by Beads priority ("p0".."p4")."""
    return {p.label: queue if p == 0 else f"{queue}:{p.value}" for p in PRIORITIES}


@contextmanager
def _channel(app: Celery) -> Iterator[Any]:
    """A channel on one of the app's pooled broker connections (no connect per read).

    A connection that fails mid-read (the broker restarted) is collected before it goes back
    to the pool, so the next read connects afresh instead of failing again on a dead socket.
    """
    conn: Any = app.pool.acquire(block=True)  # a kombu Connection (the stubs say Producer)
    with conn:
        try:
            yield conn.default_channel
        except conn.connection_errors:
            conn.collect()
            raise


def queued_by_priority(
    app: Celery, settings: Settings, queues: list[str]
) -> dict[str, dict[str, int]]:
    """Messages waiting in each queue, by Beads priority ("p0".."p4")."""
    result = {q: dict.fromkeys(priority_keys(q), 0) for q in queues}
    with _channel(app) as channel:
        if settings.broker_kind == "redis":
            with channel.client.pipeline() as pipe:
                for q in queues:
                    for key in priority_keys(q).values():
                        pipe.llen(key)
                lengths = iter(pipe.execute())
            for q in queues:
                result[q] = {level: int(next(lengths)) for level in priority_keys(q)}
        else:  # RabbitMQ reports one count per queue; it is shown under p2.
            for q in queues:
                _, count, _ = channel.queue_declare(q, passive=True)
                result[q]["p2"] = int(count)
    return result


def task_ids(
    app: Celery, settings: Settings, queues: list[str], *, include_unacked: bool = True
) -> set[str] | None:
    """Ids of tasks queued (and, with ``include_unacked``, delivered but unacked); None on AMQP."""
    if settings.broker_kind != "redis":
        return None
    keys = [key for q in queues for key in priority_keys(q).values()]
    with _channel(app) as channel, channel.client.pipeline() as pipe:
        for key in keys:
            pipe.lrange(key, 0, -1)
        pipe.hvals(UNACKED_KEY)
        *queued, unacked = pipe.execute()
    ids = {_message_id(json.loads(raw)) for items in queued for raw in items}
    if include_unacked:
        ids |= {_message_id(json.loads(raw)[0]) for raw in unacked}
    ids.discard("")
    return ids


def _message_id(message: dict[str, Any]) -> str:
    return str(message.get("headers", {}).get("id", ""))
