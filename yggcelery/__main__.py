"""``python -m yggcelery`` is ``ygg``."""

from yggcelery.cli.main import main

main()
