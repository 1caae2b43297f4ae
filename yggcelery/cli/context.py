"""What every ``ygg`` command gets: the settings file named on the command line, loaded once."""

from __future__ import annotations

from pathlib import Path

import click

from yggcelery.settings import Settings, load_settings


class Context:
    """The command line's shared state: ``--config``, and the settings built from it on demand."""

    def __init__(self, config: Path | None = None) -> None:
        self.config = config
        self._settings: Settings | None = None

    def __repr__(self) -> str:
        return f"<Context config={self.config} loaded={self._settings is not None}>"

    @property
    def loaded(self) -> Settings | None:
        """The settings if a command has loaded them (for error messages), else None."""
        return self._settings

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings


pass_context = click.make_pass_decorator(Context)
