"""What the database itself guarantees, whoever connects."""

from __future__ import annotations

import asyncpg
import pytest

from tests.graph.helpers import create_incident
from tests.support import DatabaseUnderTest, GraphQLClient

pytestmark = pytest.mark.db


async def test_history_is_append_only(
    client: GraphQLClient, database: DatabaseUnderTest, owner: asyncpg.Connection
) -> None:
    await create_incident(client)
    app = await asyncpg.connect(database.app_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute("UPDATE lighthouse.incident_event SET note = 'rewritten'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute("DELETE FROM lighthouse.incident_event")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute("DELETE FROM lighthouse.incident")
    finally:
        await app.close()
    # Even the owner cannot rewrite history: a trigger refuses.
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await owner.execute("UPDATE incident_event SET note = 'rewritten'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await owner.execute("TRUNCATE incident_event CASCADE")


async def test_the_application_role_is_unprivileged(database: DatabaseUnderTest) -> None:
    app = await asyncpg.connect(database.app_url)
    try:
        row = await app.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = current_user"
        )
        assert tuple(row) == (False, False, False, False)
        owned = await app.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'lighthouse' AND c.relowner = (SELECT oid FROM pg_roles"
            " WHERE rolname = current_user)"
        )
        assert owned == 0
    finally:
        await app.close()


async def test_closed_incidents_must_have_a_reason(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    await create_incident(client)
    with pytest.raises(asyncpg.CheckViolationError):
        await owner.execute("UPDATE incident SET status = 'CLOSED', closed_at = now()")
