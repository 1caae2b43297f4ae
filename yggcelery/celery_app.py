"""The one Celery app of yggcelery, and the Celery configuration derived from ygg settings.

:func:`celery_config` is a pure function of :class:`~yggcelery.settings.Settings`: tests check it
without a broker, and the top-level ``celeryconfig.py`` uses it too, so ``ygg worker`` and a plain
``celery -A yggcelery worker`` run with the same configuration. What it sets, and why:

- one queue per host, named after the host (``surtr-reasoning``, ``fenrir-chat``, ``skadi-code``),
  plus ``ygg-control`` for beat's reconcile job and ``ygg-cloud`` when a cloud fallback is set;
- one broker priority level per Beads priority: on Redis, ``priority_steps`` 0..4 (one list per
  level, level 0 consumed first; kombu's default steps put p0..p2 in one list); on RabbitMQ,
  ``x-max-priority`` queues, the priority inverted by :func:`~yggcelery.routing.broker_priority`;
- ``task_default_priority`` = the Beads default (p2): an unprioritised task is not the most urgent;
- prefetch 1 and late acks, so a p0 that arrives behind queued p3 work starts at the next free slot;
- the Redis visibility timeout above the hard time limit (no second delivery of a running task), and
  a fast restore sweep, so work of a killed worker comes back after the visibility timeout and not
  after kombu's default 100 s sweep;
- ``task_reject_on_worker_lost``: a task whose process died is delivered again; ``run_bead`` caps
  those deliveries so a task that kills its worker every time ends ``blocked``;
- JSON only: a pickled message is refused.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from yggcelery.capacity.live import CapacityStep
from yggcelery.heartbeat import HeartbeatStep
from yggcelery.priority import PRIORITIES, UNPRIORITISED
from yggcelery.routing import broker_priority, queue_names
from yggcelery.sentinel import transport_options
from yggcelery.settings import Settings, load_settings
from yggcelery.tasks import register_tasks

#: Socket options of every Redis connection kombu opens (seconds). The timeout is above kombu's
#: 1 s BRPOP, so an idle consumer is never mistaken for a dead one.
BROKER_SOCKET_OPTIONS: dict[str, Any] = {
    "socket_timeout": 5.0,
    "socket_connect_timeout": 3.0,
    "socket_keepalive": True,
}


class YggCelery(Celery):
    """The Celery app, carrying the typed ygg settings it was made from (:attr:`ygg`)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("yggcelery", set_as_current=False)
        self.ygg = settings
        self.config_from_object(celery_config(settings))
        self.steps["worker"].add(HeartbeatStep)
        self.steps["worker"].add(CapacityStep)

    def __repr__(self) -> str:
        return f"<YggCelery {self.ygg!r}>"


def _queues(settings: Settings) -> list[Queue]:
    arguments = {"x-max-priority": PRIORITIES[-1]} if settings.broker_kind == "amqp" else None
    return [
        Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments=arguments)
        for name in queue_names(settings)
    ]


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for the cluster described by ``settings``."""
    timeouts = settings.timeouts
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_queues": _queues(settings),
        "task_default_queue": settings.control_queue,
        "task_default_priority": broker_priority(UNPRIORITISED, settings.broker_kind),
        "task_routes": {"yggcelery.reconcile": {"queue": settings.control_queue}},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # A broker blip must not throw away minutes of GPU work: running tasks go on, their
        # results are stored once Redis is back (see RELIABILITY.md, "Broker blips").
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_soft_time_limit": timeouts.task_soft_s,
        "task_time_limit": timeouts.task_hard_s,
        "task_track_started": True,
        "worker_send_task_events": True,
        "result_extended": True,
        "result_expires": 7 * 24 * 3600,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "reconcile": {
                "task": "yggcelery.reconcile",
                "schedule": settings.dispatch.reconcile_every_s,
                "options": {
                    "queue": settings.control_queue,
                    # A reconcile that waited a whole period is stale: the next one replaces it.
                    "expires": settings.dispatch.reconcile_every_s,
                },
            }
        },
    }
    if settings.broker_kind == "amqp":
        # A message RabbitMQ did not take (its connection dropped mid-publish) raises instead of
        # vanishing: the dispatcher hands the bead back at once (dispatch/celery.py, publish).
        config["broker_transport_options"] = {"confirm_publish": True}
    if settings.broker_kind == "redis":
        config["broker_transport_options"] = {
            "priority_steps": list(PRIORITIES),
            "sep": ":",
            "queue_order_strategy": "priority",
            "visibility_timeout": timeouts.visibility_s,
            # Sweep for the unacked messages of dead workers every few seconds, not every 100 s.
            "unacked_restore_interval": 2,
            "unacked_restore_throttle": 1,
            # A broker that vanishes without closing the connection (a partition, a dead NAT
            # entry: half-open) must not hang the worker: every socket operation times out and
            # the kernel probes idle connections. Without this a worker's main loop waits in one
            # recv() for TCP's retransmission backoff, ~50 s past a 60 s partition's heal
            # (tests/test_distributed.py, the half-open scenario; RELIABILITY.md).
            **BROKER_SOCKET_OPTIONS,
            **transport_options(settings.broker_url, settings.sentinel_master),
        }
        # Storing a result survives a Redis restart of up to a minute (then the attempt is lost
        # and reconcile requeues it); an answer already paid for in GPU time is not thrown away.
        config["result_backend_transport_options"] = {
            "retry_policy": {
                "max_retries": 60,
                "interval_start": 0.5,
                "interval_step": 0.5,
                "interval_max": 1.0,
                "timeout": 60.0,
            },
            **transport_options(settings.result_backend, settings.sentinel_master),
        }
        config["redis_backend_health_check_interval"] = 10
        # The same timeouts for the result backend (Celery's default read timeout is 120 s: a
        # pool process storing a result on a half-open connection would hang that long).
        config["redis_socket_timeout"] = BROKER_SOCKET_OPTIONS["socket_timeout"]
        config["redis_socket_connect_timeout"] = BROKER_SOCKET_OPTIONS["socket_connect_timeout"]
        config["redis_socket_keepalive"] = True
        # Every result store (the existing-state read included) retries through a restart:
        # 30 tries with capped exponential backoff, about a minute; then the task fails and
        # reconcile treats the attempt as lost.
        config["result_backend_always_retry"] = True
        config["result_backend_max_retries"] = 30
        config["result_backend_base_sleep_between_retries_ms"] = 250
        config["result_backend_max_sleep_between_retries_ms"] = 2000
    return config


def make_app(settings: Settings) -> YggCelery:
    """A configured Celery app for ``settings``, with the yggcelery tasks registered."""
    app = YggCelery(settings)
    register_tasks(app)
    return app


@cache
def default_app() -> YggCelery:
    """The app for ``celery -A yggcelery``: settings from ``YGG_*`` env and ``ygg.toml``."""
    return make_app(load_settings())
