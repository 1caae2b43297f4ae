"""yggcelery: a Beads issue queue as LLM work on a small fleet of GPU hosts, through Celery."""

__version__ = "0.1.0"
