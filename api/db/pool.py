"""The asyncpg pool the gateway uses, as the application role."""

from __future__ import annotations

import asyncpg
import orjson

from api.settings import Settings

JSONB_VERSION = b"\x01"

# asyncpg decodes the fields of an anonymous record (a page read with its companions, see
# api.repositories.companions) only with codecs the connection already holds; scalar types'
# are built in, array types' are learnt when a statement first returns one. Reading one of
# each array type a record may hold teaches them all, once per connection.
RECORD_ARRAY_TYPES = (
    "bool", "int2", "int4", "int8", "float4", "float8", "numeric", "text", "varchar",
    "bytea", "uuid", "date", "timestamptz", "json", "jsonb",
)  # fmt: skip
LEARN_ARRAY_TYPES = "SELECT " + ", ".join(f"NULL::{name}[]" for name in RECORD_ARRAY_TYPES)


async def _init_connection(connection: asyncpg.Connection) -> None:
    # jsonb travels in binary form (a version byte, then the JSON text), which COPY needs too.
    await connection.set_type_codec(
        "jsonb",
        encoder=lambda value: JSONB_VERSION + orjson.dumps(value),
        decoder=lambda data: orjson.loads(data[1:]),
        schema="pg_catalog",
        format="binary",
    )
    await connection.set_type_codec(
        "json",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )
    await connection.fetchrow(LEARN_ARRAY_TYPES)


def connection_settings(settings: Settings) -> dict[str, str]:
    # Session-level settings here are connection plumbing only; the caller's identity is never
    # set per session but per transaction (see UnitOfWork).
    return {
        "search_path": "lighthouse, public",
        "application_name": "lighthouse-gateway",
        "statement_timeout": str(settings.database.statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(settings.database.statement_timeout_ms * 2),
        "timezone": "UTC",
        "plan_cache_mode": settings.database.plan_cache_mode,
    }


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with, after asyncpg has rolled back a
    transaction left open: nothing more. asyncpg's default reset (``RESET ALL``, ``CLOSE ALL``,
    ``UNLISTEN *``, advisory unlocks) costs a round trip on every request, and undoes nothing
    the gateway does: the caller's identity is written per transaction (``set_config(…,
    true)``, gone at its end, and written afresh, every setting, by the statement that opens
    the next one), no pooled connection listens, holds a cursor or takes a session lock
    (``tests/db/test_pool_reset.py`` holds the code to that)."""


async def create_pool(url: str, settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn=url,
        min_size=settings.database.pool_min_size,
        max_size=settings.database.pool_max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings=connection_settings(settings),
    )
    assert pool is not None
    return pool


async def connect(url: str, settings: Settings, application_name: str) -> asyncpg.Connection:
    server_settings = connection_settings(settings) | {"application_name": application_name}
    connection = await asyncpg.connect(dsn=url, server_settings=server_settings)
    await _init_connection(connection)
    return connection
