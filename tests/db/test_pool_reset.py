"""A pooled connection goes back to the pool without asyncpg's reset query (a round trip on
every request), which is safe because nothing a request does outlives its transaction: the
caller's identity is transaction-local, a transaction left open is rolled back, and the code
holds no session state on a pooled connection (no session settings, listeners, cursors or
session locks). These tests hold both halves: the behaviour, on a real pool, and the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from api.auth.principal import Principal, PrincipalKind
from api.db.pool import create_pool
from api.db.unit_of_work import UnitOfWork
from api.settings import DatabaseSettings, Settings
from tests.support import DatabaseUnderTest

pytestmark = pytest.mark.db

API = Path(__file__).resolve().parents[2] / "api"
OFFICER = Principal(subject="officer-a", kind=PrincipalKind.STAFF, bureau_code="PUBLIC_WORKS",
                    bureau_id=1, roles=frozenset({"officer"}),
                    scopes=frozenset({"incidents:read"}))  # fmt: skip
IDENTITY = "SELECT current_setting('lighthouse.subject', true) AS subject"


async def test_an_identity_and_an_open_transaction_never_reach_the_next_user(
    database: DatabaseUnderTest,
) -> None:
    settings = Settings(
        database=DatabaseSettings(url=database.app_url, pool_min_size=1, pool_max_size=1)
    )
    pool = await create_pool(database.app_url, settings)
    try:
        async with UnitOfWork(pool, OFFICER.database_settings()) as uow:
            assert await uow.fetchval(IDENTITY) == "officer-a"
        # A unit of work that fails half-way: its transaction is rolled back on release.
        with pytest.raises(ZeroDivisionError):
            async with UnitOfWork(pool, OFFICER.database_settings()) as uow:
                await uow.execute("SELECT 1")
                raise ZeroDivisionError
        # One connection in the pool: the same one, with nothing of the officer left on it.
        async with pool.acquire() as connection:
            assert not connection.is_in_transaction()
            assert await connection.fetchval(IDENTITY) in (None, "")
            assert await connection.fetchval("SHOW search_path") == "lighthouse, public"
            # Prepared once per connection, planned once (settings: plan_cache_mode).
            assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        # A transaction left open on a raw connection is rolled back too.
        async with pool.acquire() as connection:
            await connection.execute("BEGIN")
            await connection.execute("SELECT set_config('lighthouse.subject', 'left-open', true)")
        async with pool.acquire() as connection:
            assert not connection.is_in_transaction()
            assert await connection.fetchval(IDENTITY) in (None, "")
    finally:
        await pool.close()


def test_the_code_keeps_no_session_state_on_a_pooled_connection() -> None:
    """Session-level settings, listeners on pooled connections, held cursors and session locks
    would outlive a request without a reset; none is in the gateway's code."""
    forbidden = {
        r"set_config\([^)]*,\s*false\)": "a session-level set_config",
        # A SET statement (not UPDATE's SET): at the start of a string or after a semicolon.
        r"(^|;)\s*SET\s+(SESSION\s+)?(?!LOCAL\b)[a-z_.]+\s*(=|TO\b)": "a session-level SET",
        r"pg_advisory_lock\(|pg_try_advisory_lock\(": "a session-level advisory lock",
        r"WITH\s+HOLD": "a held cursor",
        r"\bLISTEN\s": "a LISTEN statement",
    }
    found: list[str] = []
    for path in API.rglob("*.py"):
        for line, text in _strings(path):
            for pattern, what in forbidden.items():
                if re.search(pattern, text, flags=re.IGNORECASE):
                    found.append(f"{path.relative_to(API)}:{line}: {what}")
    assert not found, found
    # Listeners only on the change feed's own connection, never on one from the pool.
    listeners = [p for p in API.rglob("*.py") if "add_listener(" in p.read_text()]
    assert [p.relative_to(API).as_posix() for p in listeners] == ["events/incident_changes.py"]
    assert (
        "pool"
        not in (API / "events" / "incident_changes.py")
        .read_text()
        .split("add_listener(")[0]
        .split("async def _supervise")[1]
    )


def _strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module (where SQL lives), docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]
