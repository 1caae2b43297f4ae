"""Dispatchers: Beads ready issues → model hosts. Celery (default), asyncio, and legacy threads.

All three share :class:`~yggcelery.dispatch.base.Dispatcher`: the same loop shape (reconcile what
finished, dispatch what is ready, sleep), the same Beads store and claim, the same work path and
failure decisions (:mod:`yggcelery.work`), and ``get_status()`` in the same shape, so switching
between them needs no change to Beads data. :func:`make_dispatcher` lives in
:mod:`~yggcelery.dispatch.choose`.
"""
