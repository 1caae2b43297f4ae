"""The ``ygg`` command line: :mod:`~yggcelery.cli.main` wires every group, and
:mod:`~yggcelery.cli.errors` turns each expected failure into one ``ygg: error:`` line.

This package imports nothing itself, so a room's commands (``beads/cli.py``, ``sim/cli.py``, ...)
can import :mod:`~yggcelery.cli.context` without pulling in every other command.
"""
