"""Every migration, up and down, one revision at a time: each ``downgrade`` undoes exactly what
its ``upgrade`` did (the catalog of the schema, read back, is what it was before the upgrade),
and the revisions go up again after going all the way down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from api.db import migrations
from api.db.endpoints import with_database
from tests.conftest import APP_ROLE, _create_database, _drop_database
from tests.support import REPOSITORY

pytestmark = pytest.mark.db

MIGRATIONS = REPOSITORY / "migrations"
# Revisions whose downgrade refuses (0003 moves personal data and starts the audit trail, 0004
# its anchors; from 0006 on, the usage records are the city's bill): they must refuse and change
# nothing. Every other revision's downgrade must undo exactly its upgrade.
IRREVERSIBLE = {"0003", "0004", "0006", "0007"}

# What the schema holds, as PostgreSQL describes it back: relations and their columns, access
# (privileges as granted, the default ones written out, so "never granted" and "revoked" agree),
# row-level security, constraints, indexes, policies, functions, triggers and types; and the rows
# of every table (reference data comes with revisions too). Alembic's own version table is left
# out (it stays, empty, at base).
CATALOG = {
    "relations": """
        SELECT c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity,
               (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(coalesce(c.relacl,
                   acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", c.relowner))) a)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'lighthouse' AND c.relname NOT LIKE 'alembic_version%'
        ORDER BY 1""",
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')
        FROM information_schema.columns
        WHERE table_schema = 'lighthouse' AND table_name <> 'alembic_version'
        ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'lighthouse' AND conrelid::regclass::text NOT LIKE '%alembic_version'
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'lighthouse' AND tablename <> 'alembic_version' ORDER BY 1, 2""",
    "policies": """
        SELECT tablename, policyname, cmd, roles::text, coalesce(qual, ''),
               coalesce(with_check, '')
        FROM pg_policies WHERE schemaname = 'lighthouse' ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid),
               (SELECT string_agg(a::text, ',' ORDER BY a::text)
                FROM unnest(coalesce(p.proacl, acldefault('f'::"char", p.proowner))) a)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'lighthouse' ORDER BY 1, 2""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'lighthouse' AND NOT t.tgisinternal ORDER BY 1, 2""",
    "types": """
        SELECT t.typname, t.typtype,
               coalesce(array_agg(e.enumlabel ORDER BY e.enumsortorder)
                   FILTER (WHERE e.enumlabel IS NOT NULL), '{}')::text
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        LEFT JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE n.nspname = 'lighthouse' AND t.typtype IN ('e', 'd', 'c')
          AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid)
        GROUP BY 1, 2 ORDER BY 1""",
}


async def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    connection = await asyncpg.connect(url)
    try:
        described = {
            name: [tuple(row) for row in await connection.fetch(query)]
            for name, query in CATALOG.items()
        }
        # The rows of each table, by their values (but the moments they were made at, which
        # differ between two databases migrated a second apart).
        columns: dict[str, list[str]] = {}
        for table, column, data_type, *_ in described["columns"]:
            if not data_type.startswith("timestamp"):
                columns.setdefault(table, []).append(f't."{column}"')
        tables = [name for name, kind, *_ in described["relations"] if kind == b"r"]
        described["rows"] = [
            (
                table,
                *await connection.fetchrow(
                    f"SELECT count(*), md5(coalesce(string_agg(row({', '.join(columns[table])})"
                    f"::text, ',' ORDER BY row({', '.join(columns[table])})::text), ''))"
                    f" FROM lighthouse.{table} AS t"
                ),
            )
            for table in tables
        ]
        return described
    finally:
        await connection.close()


@pytest.fixture
def databases(server_url: str) -> Iterator[Callable[[], str]]:
    """Empty databases on the server under test, as many as the test asks for."""
    made: list[str] = []

    def make() -> str:
        name = f"lighthouse_migrations_{uuid.uuid4().hex[:10]}"
        asyncio.run(_create_database(server_url, name))
        made.append(name)
        return with_database(server_url, name)

    yield make
    for name in made:
        asyncio.run(_drop_database(server_url, name))


def test_each_revision_goes_up_and_down_again_exactly(databases: Callable[[], str]) -> None:
    revisions = migrations.revisions(MIGRATIONS)
    assert len(revisions) >= 11 and revisions[-1] == migrations.head_revision(MIGRATIONS)
    below = dict(zip(revisions, ["base", *revisions], strict=False))

    url = databases()
    before = {"base": asyncio.run(catalog(url))}
    assert not any(before["base"].values())
    for revision in revisions:
        migrations.upgrade(url, MIGRATIONS, APP_ROLE, target=revision)
        before[revision] = asyncio.run(catalog(url))
        assert before[revision] != before[below[revision]], f"{revision} changed nothing"

    refused = set()
    for revision in reversed(revisions):
        if revision in IRREVERSIBLE:
            with pytest.raises(RuntimeError, match="cannot be"):
                migrations.downgrade(url, MIGRATIONS, APP_ROLE, below[revision])
            assert asyncio.run(catalog(url)) == before[revision], f"{revision} refused, changed"
            refused.add(revision)
            # Below it, on a database brought up to the revision under it.
            url = databases()
            migrations.upgrade(url, MIGRATIONS, APP_ROLE, target=below[revision])
            continue
        migrations.downgrade(url, MIGRATIONS, APP_ROLE, below[revision])
        after = asyncio.run(catalog(url))
        for part, rows in before[below[revision]].items():
            assert after[part] == rows, f"downgrading {revision} left {part} changed"
    assert refused == IRREVERSIBLE

    migrations.upgrade(url, MIGRATIONS, APP_ROLE)
    assert asyncio.run(catalog(url)) == before[revisions[-1]]


def test_two_migrations_at_once_on_a_server_without_the_application_role(
    databases: Callable[[], str], server_url: str
) -> None:
    """Two deployments migrating at once (two test workers on a fresh server): the application
    role is created by one; the other, whose lookup could not see it, does not fail on it."""
    role = f"lighthouse_app_{uuid.uuid4().hex[:8]}"
    url = databases()
    first = migrations.revisions(MIGRATIONS)[0]

    async def race() -> None:
        other = await asyncpg.connect(server_url)
        try:
            async with other.transaction():
                # The other deployment's CREATE ROLE, not yet committed when ours looks.
                await other.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS")
                ours = asyncio.create_task(
                    asyncio.to_thread(migrations.upgrade, url, MIGRATIONS, role, target=first)
                )
                for _ in range(600):  # ours waits on the role's row in pg_authid
                    await other.execute("SELECT pg_stat_clear_snapshot()")  # (read afresh)
                    waiting = await other.fetchval(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = $1 AND wait_event_type = 'Lock'",
                        urlsplit(url).path.lstrip("/"),
                    )
                    if waiting or ours.done():
                        break
                    await asyncio.sleep(0.05)
                assert waiting == 1, "the migration did not wait on the role being created"
            await ours  # the other committed: ours goes on, with the role as it was made
            migrated = await asyncpg.connect(url)
            try:
                assert (
                    await migrated.fetchval("SELECT version_num FROM lighthouse.alembic_version")
                    == first
                )
                assert await migrated.fetchval(
                    "SELECT has_schema_privilege($1, 'lighthouse', 'USAGE')", role
                )
            finally:
                await migrated.close()
        finally:
            await other.close()

    try:
        asyncio.run(race())
    finally:
        asyncio.run(_drop_role(server_url, role, url))


async def _drop_role(server_url: str, role: str, database_url: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            return
        database = await asyncpg.connect(database_url)
        try:
            await database.execute(f"DROP OWNED BY {role}")  # its privileges there
        finally:
            await database.close()
        await admin.execute(f"DROP ROLE {role}")
    finally:
        await admin.close()
