"""A request's transaction opens in one round trip (BEGIN, the caller's identity written as
literals, and the check that the token still stands): the identity is exactly what the
parameterised statement writes, a token that fell is told apart (revoked, client disabled)
with nothing left open, and any other error leaves the connection clean."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from api.audit.entries import AuditEntry
from api.auth.principal import Principal, PrincipalKind
from api.db.unit_of_work import UnitOfWork, set_identity
from api.repositories.audit import AuditRepository
from api.repositories.oauth import OAuthRepository
from tests.support import DatabaseUnderTest

pytestmark = pytest.mark.db

TRICKY = Principal(
    subject="o'neil $q$;SELECT set_config('lighthouse.kind','staff',true);-- 高雄",
    kind=PrincipalKind.SERVICE, bureau_code="PWB", bureau_id=3,
    roles=frozenset({"viewer", "x'y"}), scopes=frozenset({"incidents:read", "$q1$"}),
    client_id="client-$q$", token_id="jti",
)  # fmt: skip
SETTINGS = ", ".join(f"current_setting('{name}', true)" for name in TRICKY.database_settings())


@pytest.fixture
async def pool(database: DatabaseUnderTest) -> AsyncIterator[asyncpg.Pool]:
    async with database.app_pool(max_size=1) as created:
        yield created


async def test_the_identity_written_as_literals_is_the_parameterised_one(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await set_identity(connection, TRICKY.database_settings())
        expected = tuple((await connection.fetchrow(f"SELECT {SETTINGS}")).values())
    async with UnitOfWork(pool, TRICKY.database_settings()) as uow:
        revoked, disabled = await OAuthRepository.begin_checking_token(
            uow, f"fresh-{uuid.uuid4().hex}", "no-such-client"
        )
        assert (revoked, disabled) == (False, False) and uow.opened
        row = await uow.fetchrow(f"SELECT {SETTINGS}")
    assert row is not None and tuple(row.values()) == expected
    assert expected[0] == TRICKY.subject and expected[1] == "service"


async def test_a_revoked_token_and_a_disabled_client_are_told_apart_and_nothing_stays_open(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    jti, client = f"revoked-{uuid.uuid4().hex}", f"disabled-{uuid.uuid4().hex[:12]}"
    await owner.execute(
        "INSERT INTO lighthouse.revoked_token (jti, client_id, expires_at)"
        " VALUES ($1, 'someone', to_timestamp($2))",
        jti,
        int(time.time()) + 600,
    )
    await owner.execute(
        "INSERT INTO lighthouse.oauth_client (client_id, name, secret_hash, kind, scopes, disabled_at)"
        " VALUES ($1, 'disabled for the test', 'x', 'service', '{}', now())",
        client,
    )
    try:
        for token, client_id, expected in (
            (jti, "someone", (True, False)),
            (f"fresh-{uuid.uuid4().hex}", client, (False, True)),
        ):
            uow = UnitOfWork(pool, TRICKY.database_settings())
            assert await OAuthRepository.begin_checking_token(uow, token, client_id) == expected
            assert not uow.opened
            async with pool.acquire() as connection:  # the pool's one connection, clean
                assert not connection.is_in_transaction()
                assert await connection.fetchval(
                    "SELECT current_setting('lighthouse.subject', true)"
                ) in (None, "")
    finally:
        await owner.execute("DELETE FROM lighthouse.oauth_client WHERE client_id = $1", client)


async def test_an_error_while_opening_leaves_the_connection_clean(pool: asyncpg.Pool) -> None:
    uow = UnitOfWork(pool, TRICKY.database_settings())
    with pytest.raises(asyncpg.DivisionByZeroError):
        await uow.begin_with("SELECT 1 / 0")
    assert not uow.opened
    async with pool.acquire() as connection:
        assert not connection.is_in_transaction()


async def test_a_statement_in_flight_finishes_before_the_commit_and_none_runs_after(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    """A resolver can outlive its operation (graphql-core does not cancel a failed field's
    siblings): the commit waits for its statement, and a later one is refused rather than
    opening a transaction nobody would close."""
    request = f"in-flight-{uuid.uuid4().hex[:8]}"
    uow = UnitOfWork(pool, TRICKY.database_settings())
    await uow.execute("SELECT 1")
    slow = asyncio.create_task(uow.fetchval("SELECT 42 FROM pg_sleep(0.3)"))
    await asyncio.sleep(0.05)
    made = AuditEntry.of(
        TRICKY, request_id=request, category="graphql", operation="probe", decision="ALLOW",
        policy_version="test",
    )  # fmt: skip
    await AuditRepository(uow).append(made)
    await uow.close(commit=True)
    assert slow.done() and await slow == 42
    with pytest.raises(RuntimeError, match="closed"):
        await uow.fetchval("SELECT 1")
    async with pool.acquire() as connection:  # the pool's one connection, back and clean
        assert not connection.is_in_transaction()
    stored = "SELECT count(*) FROM lighthouse.audit_record WHERE request_id = $1"
    assert await owner.fetchval(stored, request) == 1
