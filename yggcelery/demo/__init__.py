"""``ygg demo`` (``make demo``): the main job end to end on one machine, on simulated GPU hosts.

:mod:`~yggcelery.demo.run` runs it, :mod:`~yggcelery.demo.view` draws the live progress and the
summary, :mod:`~yggcelery.demo.cli` is the command.
"""
