"""Helpers shared by the hand-written revisions."""

from __future__ import annotations

import re

from alembic import context, op
from sqlalchemy.util import await_only


def app_role() -> str:
    """The application role's name, passed in by ``lighthouse migrate``."""
    role = str(context.config.attributes.get("app_role", "lighthouse_app"))
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError(f"unsafe application role name {role!r}")
    return role


def execute_script(sql: str) -> None:
    """Run a script of several statements (functions, DO blocks, policies) in one round trip.

    SQLAlchemy's asyncpg driver prepares every statement, and a prepared statement holds one
    command; the driver connection's ``execute`` without arguments uses the simple query
    protocol, which takes a whole script. It runs in the migration's transaction.
    """
    driver_connection = op.get_bind().connection.driver_connection
    await_only(driver_connection.execute(sql))
