"""The work path, shared by every dispatcher: what happens to one bead's attempt.

- :mod:`~yggcelery.work.order`: :class:`WorkOrder`, one attempt of one bead (the task's JSON);
- :mod:`~yggcelery.work.prompt`: the prompt, cut once, to the target's limit;
- :mod:`~yggcelery.work.fate`: what a failure means (retry here, fall back, requeue, block);
- :mod:`~yggcelery.work.resources`: the process's client, breaker and cloud fallback;
- :mod:`~yggcelery.work.perform`: :func:`perform` / :func:`aperform`, the path itself.
"""
