"""Beads: the issue queue yggcelery turns into LLM work.

The model (:class:`Issue`), the readiness rules of ``bd ready`` in both of bd's eras
(:func:`ready`, :data:`RULE_SETS`), the import quirks bd applies to dependency edges (``edges``),
what is wrong with a line (:class:`Diagnostic`), and two stores behind one protocol
(:class:`BeadsStore`): :class:`JsonlStore` for a plain ``issues.jsonl`` and :class:`BdCliStore` for
bd 1.x workspaces. :func:`open_store` picks one from the settings.
"""

from __future__ import annotations

from yggcelery.beads.bdcli import BdCliStore
from yggcelery.beads.diagnostics import Diagnostic
from yggcelery.beads.jsonl import JsonlStore
from yggcelery.beads.model import Comment, Dependency, Issue
from yggcelery.beads.ready import RULE_SETS, Rules, RuleSetName, ready
from yggcelery.beads.store import BeadsStore, open_store
from yggcelery.settings import SortOrder

__all__ = [
    "RULE_SETS",
    "BdCliStore",
    "BeadsStore",
    "Comment",
    "Dependency",
    "Diagnostic",
    "Issue",
    "JsonlStore",
    "RuleSetName",
    "Rules",
    "SortOrder",
    "open_store",
    "ready",
]
