"""``ygg beads``: look at and change the Beads queue (filled in below)."""

from __future__ import annotations

import click


@click.group()
def beads() -> None:
    """Look at and change the Beads issue queue."""
