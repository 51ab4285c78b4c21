"""The ASGI entry point for servers: ``uvicorn --factory api.main:app``."""

from __future__ import annotations

from starlette.applications import Starlette

from api.app import create_app
from api.graph.domains import DOMAINS
from api.logging import configure_logging
from api.settings import SettingsError, load_settings


def app() -> Starlette:
    settings = load_settings()
    configure_logging(settings.logging.level, settings.logging.format)
    name = settings.graph.subgraph
    if name is not None and name not in DOMAINS:
        raise SystemExit(
            f"LIGHTHOUSE_SUBGRAPH={name!r} names no domain; one of: {', '.join(DOMAINS)}"
        )
    try:
        if name is None:
            return create_app(settings)
        return create_app(settings, [DOMAINS[name]], subgraph=True)
    except SettingsError as error:  # a setting only the app's parts can check (a file it names)
        raise SystemExit(str(error)) from None
