"""Celery's configuration module for yggcelery, derived from ygg settings.

Celery reads this module when started as ``celery -A yggcelery --config celeryconfig ...`` (or
through ``app.config_from_object("celeryconfig")``). Every value comes from
:func:`yggcelery.celery_app.celery_config`, the one place that turns ``ygg.toml``/``YGG_*``
settings into Celery settings (queues, priority levels, acks, time limits, serializer, beat), so
``ygg worker`` and a plain ``celery worker`` run with the same configuration.

Site-specific Celery overrides go at the end of this file, e.g. ``worker_max_tasks_per_child = 50``.
"""

from yggcelery.celery_app import celery_config
from yggcelery.settings import load_settings

globals().update(celery_config(load_settings()))
