"""Pick a dispatcher by the name ``ygg loop`` and the benchmark use."""

from __future__ import annotations

from collections.abc import Callable

from yggcelery.beads import BeadsStore
from yggcelery.dispatch.asyncio import AsyncDispatcher
from yggcelery.dispatch.base import Dispatcher
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.dispatch.legacy import LegacyDispatcher
from yggcelery.settings import Settings

DISPATCHERS: dict[str, Callable[[Settings, BeadsStore], Dispatcher]] = {
    "celery": CeleryDispatcher,
    "asyncio": AsyncDispatcher,
    "legacy": LegacyDispatcher,
}


def make_dispatcher(name: str, settings: Settings, store: BeadsStore) -> Dispatcher:
    """The dispatcher called ``name`` (``celery``, ``asyncio`` or ``legacy``)."""
    try:
        factory = DISPATCHERS[name]
    except KeyError:
        raise ValueError(f"unknown dispatcher {name!r} ({', '.join(DISPATCHERS)})") from None
    return factory(settings, store)
