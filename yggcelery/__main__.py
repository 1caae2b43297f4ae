"""``python -m yggcelery`` is ``ygg``."""

from yggcelery.cli import main

main()
