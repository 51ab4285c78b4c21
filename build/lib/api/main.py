"""The ASGI entry point for servers: ``uvicorn --factory api.main:app``."""

from __future__ import annotations

from starlette.applications import Starlette

from api.app import create_app
from api.logging import configure_logging
from api.settings import load_settings


def app() -> Starlette:
    settings = load_settings()
    configure_logging(settings.logging.level, settings.logging.format)
    return create_app(settings)
