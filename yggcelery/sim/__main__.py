"""``python -m yggcelery.sim``: the same as ``ygg sim`` (settings: $YGG_CONFIG, ygg.toml)."""

from __future__ import annotations

import logging

from yggcelery.sim.cli import sim

if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sim.main(prog_name="python -m yggcelery.sim")
