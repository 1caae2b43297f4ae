"""The benchmark: scenarios, the theoretical bound, the runner and the report (``ygg bench``)."""
