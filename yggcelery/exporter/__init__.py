"""The Prometheus exporter: what ``ygg loop`` serves on ``/metrics``.

- :mod:`~yggcelery.exporter.collector`: every series, read when scraped (:class:`YggCollector`);
- :mod:`~yggcelery.exporter.durations`: the task-duration histogram, shared in Redis;
- :mod:`~yggcelery.exporter.gpu`: GPU busy share per host;
- :mod:`~yggcelery.exporter.server`: the HTTP endpoint.

Nothing in the dispatch or work path imports this package; its callers record into it.
"""
