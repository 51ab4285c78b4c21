"""Database errors become domain errors at the repository edge (``api.db.errors``).

Every error here is raised by a real PostgreSQL for a real reason — a missing bureau, a broken
rule, a row-level security refusal, a statement timeout, a lock or a serialization conflict —
so the SQLSTATEs and the attributes ``translate`` reads are the ones production sees.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from api.db.endpoints import with_user
from api.db.errors import is_unique_violation, translate
from api.db.pool import connect
from api.domain.errors import Forbidden, InvalidInput, NotFound, ServiceUnavailable
from api.settings import DatabaseSettings, Settings
from tests.support import DatabaseUnderTest

pytestmark = pytest.mark.db

INSERT_ASSET = (
    "INSERT INTO lighthouse.asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
    " VALUES ($1, 'CAMERA', $2, $3, 22.62, 120.30, 'tests')"
)


async def raised(
    call: Awaitable[Any], savepoint_of: asyncpg.Connection | None = None
) -> asyncpg.PostgresError:
    """The database error ``call`` ends with (it must end with one); inside a savepoint of
    ``savepoint_of``'s transaction, when given, so that the transaction stays usable."""
    with pytest.raises(asyncpg.PostgresError) as caught:
        if savepoint_of is None:
            await call
        else:
            async with savepoint_of.transaction():
                await call
    return caught.value


@pytest.fixture
async def rolled_back(owner: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """The owner's connection inside a transaction that is rolled back: nothing stays."""
    transaction = owner.transaction()
    await transaction.start()
    try:
        yield owner
    finally:
        await transaction.rollback()


@pytest.fixture
async def scratch(owner: asyncpg.Connection) -> AsyncIterator[str]:
    """A table of two rows, for provoking lock, serialization and deadlock conflicts."""
    name = f"public.error_probe_{uuid.uuid4().hex[:10]}"
    await owner.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY, n integer NOT NULL)")
    await owner.execute(f"INSERT INTO {name} VALUES (1, 0), (2, 0)")
    try:
        yield name
    finally:
        await owner.execute(f"DROP TABLE {name}")


@pytest.fixture
async def second(database: DatabaseUnderTest) -> AsyncIterator[asyncpg.Connection]:
    """A second session as the owner, to conflict with the first."""
    connection = await asyncpg.connect(database.owner_url)
    try:
        yield connection
    finally:
        await connection.close()


async def test_a_missing_referenced_record_is_not_found(rolled_back: asyncpg.Connection) -> None:
    error = await raised(rolled_back.execute(INSERT_ASSET, "ERR-FK", "無主設施", 999_999))
    assert isinstance(error, asyncpg.ForeignKeyViolationError)
    translated = translate(error)
    assert isinstance(translated, NotFound)
    assert (translated.code, translated.entity) == ("NOT_FOUND", "bureau")
    # The server's words (and the constraint's name) stay in the server.
    assert "fkey" not in translated.message and "asset" not in translated.message


async def test_a_broken_rule_of_the_data_model_is_invalid_input(
    rolled_back: asyncpg.Connection,
) -> None:
    bureau = await rolled_back.fetchval("SELECT id FROM bureau WHERE code = 'PUBLIC_WORKS'")
    error = await raised(rolled_back.execute(INSERT_ASSET, "", "空編號", bureau))
    assert isinstance(error, asyncpg.CheckViolationError)
    translated = translate(error)
    assert isinstance(translated, InvalidInput)
    assert (translated.code, translated.field) == ("INVALID_INPUT", "asset_code_check")
    assert translated.reason == "violates a rule of the data model"


@pytest.mark.parametrize(
    ("statement", "error_type"),
    [
        ("SELECT 'twelve'::integer", asyncpg.InvalidTextRepresentationError),  # 22P02
        ("SELECT 2147483647::integer + 1", asyncpg.NumericValueOutOfRangeError),  # 22003
        ("SELECT 'yesterday-ish'::timestamptz", asyncpg.InvalidDatetimeFormatError),  # 22007
        ("SELECT '{\"a\":'::jsonb", asyncpg.InvalidTextRepresentationError),  # 22P02
    ],
)
async def test_bad_values_are_invalid_input(
    owner: asyncpg.Connection, statement: str, error_type: type[asyncpg.PostgresError]
) -> None:
    error = await raised(owner.fetchval(statement))
    assert isinstance(error, error_type)
    assert error.sqlstate.startswith("22")
    translated = translate(error)
    assert isinstance(translated, InvalidInput)
    assert translated.field == "input"
    assert str(error) not in translated.message  # the server's words stay in the server


async def test_a_data_exception_of_the_code_is_not_the_callers(owner: asyncpg.Connection) -> None:
    error = await raised(owner.fetchval("SELECT 1 / 0"))
    assert isinstance(error, asyncpg.DivisionByZeroError)
    assert translate(error) is None


async def test_what_the_application_role_may_not_do_is_forbidden(
    database: DatabaseUnderTest,
) -> None:
    app = await asyncpg.connect(database.app_url)
    try:
        # No grant: the audit trail is written only through append_audit().
        no_grant = await raised(app.execute("DELETE FROM lighthouse.audit_record"))
        # A grant, but row-level security: no identity is set, so no bureau owns the new row.
        refused_row = await raised(app.execute(INSERT_ASSET, "ERR-RLS", "越權設施", 1))
    finally:
        await app.close()
    for error in (no_grant, refused_row):
        assert isinstance(error, asyncpg.InsufficientPrivilegeError)
        translated = translate(error)
        assert isinstance(translated, Forbidden)
        assert translated.code == "FORBIDDEN"
    assert "row-level security" in str(refused_row)


async def test_a_statement_over_the_timeout_is_a_retryable_unavailability(
    database: DatabaseUnderTest,
) -> None:
    # The gateway's own connection settings carry the statement timeout.
    settings = Settings(database=DatabaseSettings(url=database.app_url, statement_timeout_ms=100))
    connection = await connect(database.app_url, settings, "lighthouse-tests-timeout")
    try:
        assert await connection.fetchval("SHOW statement_timeout") == "100ms"
        error = await raised(connection.execute("SELECT pg_sleep(2)"))
    finally:
        await connection.close()
    assert isinstance(error, asyncpg.QueryCanceledError)
    assert error.sqlstate == "57014"
    translated = translate(error)
    assert isinstance(translated, ServiceUnavailable)
    assert translated.code == "SERVICE_UNAVAILABLE"


async def test_a_row_locked_by_another_session_is_a_retryable_unavailability(
    owner: asyncpg.Connection, second: asyncpg.Connection, scratch: str
) -> None:
    async with owner.transaction():
        await owner.execute(f"SELECT * FROM {scratch} WHERE id = 1 FOR UPDATE")
        # (NOWAIT: PostgreSQL refuses at once instead of waiting for the lock.)
        error = await raised(
            second.execute(f"SELECT * FROM {scratch} WHERE id = 1 FOR UPDATE NOWAIT")
        )
    assert isinstance(error, asyncpg.LockNotAvailableError)
    assert isinstance(translate(error), ServiceUnavailable)


async def test_a_serialization_failure_is_a_retryable_unavailability(
    owner: asyncpg.Connection, second: asyncpg.Connection, scratch: str
) -> None:
    transaction = owner.transaction(isolation="repeatable_read")
    await transaction.start()
    try:
        assert await owner.fetchval(f"SELECT n FROM {scratch} WHERE id = 1") == 0
        await second.execute(f"UPDATE {scratch} SET n = n + 1 WHERE id = 1")  # commits
        error = await raised(owner.execute(f"UPDATE {scratch} SET n = n + 1 WHERE id = 1"))
    finally:
        await transaction.rollback()
    assert isinstance(error, asyncpg.SerializationError)
    assert error.sqlstate == "40001"
    assert isinstance(translate(error), ServiceUnavailable)


async def test_a_deadlock_is_a_retryable_unavailability(
    owner: asyncpg.Connection, second: asyncpg.Connection, scratch: str
) -> None:
    both_hold_one = asyncio.Barrier(2)

    async def lock_both(connection: asyncpg.Connection, first: int, then: int) -> None:
        async with connection.transaction():
            await connection.execute("SET LOCAL deadlock_timeout = '50ms'")
            await connection.execute(f"UPDATE {scratch} SET n = n + 1 WHERE id = $1", first)
            await both_hold_one.wait()
            await connection.execute(f"UPDATE {scratch} SET n = n + 1 WHERE id = $1", then)

    outcomes = await asyncio.wait_for(
        asyncio.gather(lock_both(owner, 1, 2), lock_both(second, 2, 1), return_exceptions=True),
        timeout=30,
    )
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(errors) == 1, outcomes  # PostgreSQL breaks the cycle by ending one of the two
    (error,) = errors
    assert isinstance(error, asyncpg.DeadlockDetectedError)
    assert error.sqlstate == "40P01"
    assert isinstance(translate(error), ServiceUnavailable)


async def test_a_role_out_of_connections_is_a_retryable_unavailability(
    database: DatabaseUnderTest, owner: asyncpg.Connection
) -> None:
    role = f"lighthouse_probe_{uuid.uuid4().hex[:8]}"
    await owner.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    try:
        error = await raised(asyncpg.connect(with_user(database.owner_url, role)))
    finally:
        await owner.execute(f"DROP ROLE {role}")
    assert isinstance(error, asyncpg.TooManyConnectionsError)
    assert error.sqlstate == "53300"
    assert isinstance(translate(error), ServiceUnavailable)


PROGRAMMING_ERRORS: dict[str, Callable[[asyncpg.Connection, int], Awaitable[Any]]] = {
    "a unique violation": lambda c, b: c.execute(
        INSERT_ASSET + ", ($4, 'CAMERA', $2, $3, 22.62, 120.30, 'tests')",
        "ERR-DUP",
        "重複",
        b,
        "ERR-DUP",
    ),
    "a missing required value": lambda c, b: c.execute(INSERT_ASSET, None, "無編號", b),
    "an unknown table": lambda c, b: c.execute("SELECT * FROM lighthouse.no_such_table"),
    "a syntax error": lambda c, b: c.execute("SELEC 1"),
}


@pytest.mark.parametrize("name", PROGRAMMING_ERRORS)
async def test_programming_errors_are_not_translated(
    rolled_back: asyncpg.Connection, name: str
) -> None:
    """What no caller could have caused stays an error (and is masked as unexpected)."""
    bureau = await rolled_back.fetchval("SELECT id FROM bureau WHERE code = 'PUBLIC_WORKS'")
    error = await raised(PROGRAMMING_ERRORS[name](rolled_back, bureau))
    assert translate(error) is None, error


async def test_unique_violations_are_recognised_by_constraint(
    rolled_back: asyncpg.Connection,
) -> None:
    bureau = await rolled_back.fetchval("SELECT id FROM bureau WHERE code = 'PUBLIC_WORKS'")
    await rolled_back.execute(INSERT_ASSET, "ERR-UNIQUE", "第一支", bureau)
    duplicate = await raised(
        rolled_back.execute(INSERT_ASSET, "ERR-UNIQUE", "第二支", bureau), savepoint_of=rolled_back
    )
    broken_rule = await raised(
        rolled_back.execute(INSERT_ASSET, "", "空編號", bureau), savepoint_of=rolled_back
    )
    assert isinstance(duplicate, asyncpg.UniqueViolationError)
    assert is_unique_violation(duplicate)
    assert is_unique_violation(duplicate, "asset_code_key")
    assert not is_unique_violation(duplicate, "incident_case_number_key")
    assert not is_unique_violation(broken_rule)
    assert not is_unique_violation(ValueError("not from the database"), "asset_code_key")
