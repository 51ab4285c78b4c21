"""Alembic environment: hand-written revisions, run online through SQLAlchemy's asyncpg driver.

Run by ``lighthouse migrate`` (api/db/migrations.py), which passes the owner's URL and the name
of the application role in ``config.attributes``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
SCHEMA = "lighthouse"


def _run(connection: Connection) -> None:
    # The version table lives in the application schema, which must exist before Alembic
    # looks for it.
    # Several processes may start at once (gateway workers): one migrates, the others wait.
    connection.execute(text("SELECT pg_advisory_lock(hashtext('lighthouse.migrations'))"))
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    connection.commit()
    context.configure(
        connection=connection,
        version_table_schema=SCHEMA,
        transaction_per_migration=True,
        on_version_apply=config.attributes.get("on_version_apply"),
    )
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(hashtext('lighthouse.migrations'))"))
        connection.commit()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection: Any = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: run migrations with `lighthouse migrate`")
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    raise RuntimeError(
        "offline (SQL script) migrations are not supported; use `lighthouse migrate`"
    )
run_migrations_online()
