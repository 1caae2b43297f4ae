"""yggcelery: a Beads issue queue as LLM work on a small fleet of GPU hosts, through Celery.

``celery -A yggcelery worker ...`` finds the app through :func:`__getattr__` below, which builds
it from settings on first access, so importing the package reads no environment.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from yggcelery.celery_app import default_app

        return default_app()
    raise AttributeError(f"module 'yggcelery' has no attribute {name!r}")
