"""What every ``lighthouse`` command shares: its settings, loaded and checked, and its logs."""

from __future__ import annotations

import os

import typer
from rich.console import Console

from api.logging import configure_logging
from api.settings import LogFormat, Settings, SettingsError, load_settings

console = Console(stderr=True)


def command_settings(*, service: bool = False, **overrides: object) -> Settings:
    """The settings, or a message naming what is wrong and exit code 2."""
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    # Commands talk to a person: readable logs unless JSON was asked for explicitly. Services
    # (the gateway, the workers) log as the settings say, JSON lines by default.
    explicit = service or "LIGHTHOUSE_LOG_FORMAT" in os.environ
    configure_logging(
        settings.logging.level, settings.logging.format if explicit else LogFormat.CONSOLE
    )
    return settings
