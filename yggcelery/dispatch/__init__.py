"""Dispatchers: Beads ready issues → model hosts. Celery (default), asyncio, and legacy threads.

All three share :class:`~yggcelery.dispatch.base.Dispatcher`: the same loop shape (reconcile what
finished, dispatch what is ready, sleep), the same Beads store and claim, the same outcome writes,
and ``get_status()`` in the same shape, so switching between them needs no change to Beads data.
"""

from yggcelery.dispatch.base import Dispatcher, HostStatus, format_status

__all__ = ["Dispatcher", "HostStatus", "format_status", "make_dispatcher"]


def make_dispatcher(name: str, settings: object, store: object) -> Dispatcher:
    """The dispatcher called ``name`` (``celery``, ``asyncio`` or ``legacy``)."""
    from yggcelery.beads import BeadsStore
    from yggcelery.settings import Settings

    assert isinstance(settings, Settings)
    assert isinstance(store, BeadsStore)
    if name == "celery":
        from yggcelery.dispatch.celery import CeleryDispatcher

        return CeleryDispatcher(settings, store)
    if name == "asyncio":
        from yggcelery.dispatch.asyncio import AsyncDispatcher

        return AsyncDispatcher(settings, store)
    if name == "legacy":
        from yggcelery.dispatch.legacy import LegacyDispatcher

        return LegacyDispatcher(settings, store)
    raise ValueError(f"unknown dispatcher {name!r} (celery, asyncio, legacy)")
