"""The schema owned by a role that is not a superuser, as a city's DBAs run it.

A superuser passes row-level security even where it is forced, so the rest of the suite (whose
databases a superuser migrates) cannot show that the functions that alone write the quota
ledger, the usage records and the audit chain (SECURITY DEFINER, running as the owner) are let
through by the policies that keep everyone else out. Here a database is created for, and
migrated by, an owner without SUPERUSER, BYPASSRLS or CREATEROLE, and the quota ledger's tests
run again on it (reads "as the owner" in those tests use a superuser, as an auditor's
read-only DBA account would).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from api.db import migrations
from api.db.endpoints import with_database, with_user
from tests.conftest import APP_ROLE, _drop_database
from tests.db.test_quota_ledger import *  # noqa: F403  (collected again, on this module's database)
from tests.support import REPOSITORY, DatabaseUnderTest

pytestmark = pytest.mark.db


async def _create(server_url: str, name: str, owner: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(
            f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"
        )
        # The application role exists before the owner's migration, as the DBAs create it.
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE):
            await admin.execute(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS")
        await admin.execute(f'CREATE DATABASE "{name}" OWNER {owner}')
    finally:
        await admin.close()
    # The extensions only a superuser may create (earthdistance is not a trusted one), created
    # by the DBAs beforehand as the README says; the migration then finds them.
    database = await asyncpg.connect(with_database(server_url, name))
    try:
        await database.execute(
            "CREATE EXTENSION cube WITH SCHEMA public;"
            " CREATE EXTENSION earthdistance WITH SCHEMA public;"
        )
    finally:
        await database.close()


async def _drop_role(server_url: str, owner: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {owner}")
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def database(server_url: str) -> Iterator[DatabaseUnderTest]:
    """This module's database: owned and migrated by an unprivileged role."""
    suffix = uuid.uuid4().hex[:10]
    name, owner = f"lighthouse_test_{suffix}", f"lighthouse_owner_{suffix}"
    asyncio.run(_create(server_url, name, owner))
    superuser_url = with_database(server_url, name)
    migrations.upgrade(with_user(superuser_url, owner), REPOSITORY / "migrations", APP_ROLE)
    yield DatabaseUnderTest(name, superuser_url, with_user(superuser_url, APP_ROLE))
    asyncio.run(_drop_database(server_url, name))
    asyncio.run(_drop_role(server_url, owner))


async def test_the_schema_and_its_functions_belong_to_the_unprivileged_owner(
    database: DatabaseUnderTest,
) -> None:
    connection = await asyncpg.connect(database.owner_url)
    try:
        owners = await connection.fetch(
            "SELECT DISTINCT r.rolname, r.rolsuper, r.rolbypassrls FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_roles r ON r.oid = p.proowner"
            " WHERE n.nspname = 'lighthouse' AND p.prosecdef"
        )
        tables = await connection.fetchval(
            "SELECT count(DISTINCT tableowner) FROM pg_tables WHERE schemaname = 'lighthouse'"
        )
    finally:
        await connection.close()
    assert len(owners) == 1 and owners[0]["rolname"].startswith("lighthouse_owner_")
    assert not owners[0]["rolsuper"] and not owners[0]["rolbypassrls"]
    assert tables == 1
