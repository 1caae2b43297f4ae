"""Celery configuration derived from settings (pure: no broker needed)."""

from __future__ import annotations

import pytest
from kombu.exceptions import ContentDisallowed

from yggcelery.celery_app import celery_config, make_app, queue_names
from yggcelery.settings import load_settings


def test_one_queue_per_host_plus_control() -> None:
    """Queues are the host names and the control queue; cloud only when configured."""
    assert queue_names(load_settings()) == [
        "surtr-reasoning",
        "fenrir-chat",
        "skadi-code",
        "ygg-control",
    ]
    assert "ygg-cloud" in queue_names(load_settings(cloud={"url": "https://api.example/v1"}))


def test_redis_has_one_priority_level_per_beads_priority() -> None:
    """priority_steps 0..4 with the priority strategy; unprioritised tasks are not urgent."""
    config = celery_config(load_settings())
    transport = config["broker_transport_options"]
    assert transport["priority_steps"] == [0, 1, 2, 3, 4]
    assert transport["queue_order_strategy"] == "priority"
    assert config["task_default_priority"] > 0


def test_acks_prefetch_and_visibility_follow_the_design() -> None:
    """Late acks, prefetch 1, visibility above the hard limit, reject on worker loss."""
    settings = load_settings()
    config = celery_config(settings)
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"]["visibility_timeout"] > config["task_time_limit"]


def test_rabbitmq_queues_declare_max_priority_and_invert() -> None:
    """On AMQP every queue has x-max-priority 4, and publishes wait for RabbitMQ's confirm
    (none of Redis' transport options apply)."""
    config = celery_config(load_settings(broker_url="amqp://guest:guest@localhost:5672//"))
    assert all(q.queue_arguments == {"x-max-priority": 4} for q in config["task_queues"])
    assert config["broker_transport_options"] == {"confirm_publish": True}


def test_beat_reconcile_is_routed_to_the_control_queue() -> None:
    """Beat's job goes to a queue a worker consumes (not the default `celery`)."""
    config = celery_config(load_settings())
    assert config["beat_schedule"]["reconcile"]["options"]["queue"] == "ygg-control"
    assert config["task_routes"]["yggcelery.reconcile"]["queue"] == "ygg-control"


def test_only_json_is_accepted_a_pickled_message_is_refused() -> None:
    """The app's consumer refuses pickle content (remote code execution vector)."""
    app = make_app(load_settings())
    assert app.conf.accept_content == ["json"]
    from kombu.serialization import loads

    with pytest.raises(ContentDisallowed):
        loads(
            b"\x80\x04K\x01.",
            "application/x-python-serialize",
            "binary",
            accept=app.conf.accept_content,
        )
