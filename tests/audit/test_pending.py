"""Audit records are appended in the access's own transaction to a pending log and linked into
the hash chain right after the commit: nothing committed is ever left out of the chain (a
record whose linking did not happen is linked by the next commit), concurrent commits are all
linked in one unbroken, verifiable run, and the application role cannot touch the pending log."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from api.audit.entries import AuditEntry
from api.auth.keys import KeyRing
from api.auth.principal import Principal, PrincipalKind
from api.db.pool import connect
from api.db.unit_of_work import UnitOfWork
from api.repositories.audit import APPEND, AuditRepository, append_arguments
from api.repositories.oauth import OAuthRepository
from api.services.audit_chain import AuditAnchors, verify_chain
from api.settings import OAuthSettings, Settings
from tests.support import DatabaseUnderTest

pytestmark = pytest.mark.db

WRITER = Principal(subject="pending-probe", kind=PrincipalKind.STAFF)


def entry(request_id: str) -> AuditEntry:
    return AuditEntry.of(
        WRITER, request_id=request_id, category="graphql", operation="probe",
        decision="ALLOW", policy_version="test",
    )  # fmt: skip


@pytest.fixture
async def pool(database: DatabaseUnderTest) -> AsyncIterator[asyncpg.Pool]:
    async with database.app_pool(max_size=20) as created:
        yield created


async def chained(owner: asyncpg.Connection, request_ids: list[str]) -> list[int]:
    rows = await owner.fetch(
        "SELECT seq FROM lighthouse.audit_record WHERE request_id = ANY($1::text[]) ORDER BY seq",
        request_ids,
    )
    return [row["seq"] for row in rows]


async def pending(owner: asyncpg.Connection, request_ids: list[str]) -> int:
    return int(
        await owner.fetchval(
            "SELECT count(*) FROM lighthouse.audit_pending WHERE request_id = ANY($1::text[])",
            request_ids,
        )
    )


async def test_a_record_committed_without_its_linking_is_linked_by_the_next_commit(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    """A gateway that dies between its commit and the linking leaves its record pending, never
    lost: the next audited commit (any process's) links it, before its own, in commit order."""
    first, second = f"left-{uuid.uuid4().hex[:8]}", f"next-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as connection, connection.transaction():
        await connection.fetchval(APPEND, *append_arguments(entry(first)))
    assert await pending(owner, [first]) == 1 and await chained(owner, [first]) == []
    async with UnitOfWork(pool, WRITER.database_settings()) as uow:
        await AuditRepository(uow).append(entry(second))
    assert await pending(owner, [first, second]) == 0
    seqs = await chained(owner, [first, second])
    assert len(seqs) == 2 and seqs[1] == seqs[0] + 1
    outcome = await verify_chain(AuditRepository(owner), 1, None)
    assert outcome.intact, outcome


async def test_a_rolled_back_access_leaves_no_record(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    request = f"undone-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ZeroDivisionError):
        async with UnitOfWork(pool, WRITER.database_settings()) as uow:
            await AuditRepository(uow).append(entry(request))
            raise ZeroDivisionError
    assert await pending(owner, [request]) == 0 and await chained(owner, [request]) == []


async def test_concurrent_commits_are_all_linked_in_one_unbroken_run(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    requests = [f"together-{uuid.uuid4().hex[:8]}-{n}" for n in range(40)]

    async def access(request_id: str) -> None:
        async with UnitOfWork(pool, WRITER.database_settings()) as uow:
            await AuditRepository(uow).append(entry(request_id))

    await asyncio.gather(*(access(r) for r in requests))
    seqs = await chained(owner, requests)
    assert len(seqs) == len(requests) == len(set(seqs))
    assert await pending(owner, requests) == 0
    outcome = await verify_chain(AuditRepository(owner), 1, None)
    assert outcome.intact, outcome


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM lighthouse.audit_pending",
        "DELETE FROM lighthouse.audit_pending",
        "UPDATE lighthouse.audit_pending SET subject = 'someone-else'",
        "INSERT INTO lighthouse.audit_pending (occurred_at, request_id, subject, principal_kind,"
        " category, operation, decision, policy_version, payload)"
        " VALUES (now(), 'x', 'x', 'staff', 'graphql', 'x', 'ALLOW', 'x', 'x')",
    ],
    ids=["read", "delete", "update", "insert"],
)
async def test_the_application_role_cannot_touch_the_pending_log(
    pool: asyncpg.Pool, sql: str
) -> None:
    async with pool.acquire() as connection:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute(sql)


async def test_an_anchor_links_what_is_pending_before_it_signs(
    pool: asyncpg.Pool, owner: asyncpg.Connection, database: DatabaseUnderTest
) -> None:
    """A record whose linking was lost, with no audited commit after it (a quiet night), is
    linked by the next anchor, which then covers it."""
    left = f"quiet-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as connection, connection.transaction():
        await connection.fetchval(APPEND, *append_arguments(entry(left)))
    assert await pending(owner, [left]) == 1
    settings = Settings(oauth=OAuthSettings(issuer="https://anchor.test"))
    signer = await connect(database.owner_url, settings, "anchor-test")  # with the JSON codecs
    try:
        keys = KeyRing(settings)
        oauth = OAuthRepository(signer)
        await keys.ensure_signing_key(oauth)
        anchors = AuditAnchors(AuditRepository(signer), oauth, keys, "https://anchor.test")
        anchor = await anchors.publish()
    finally:
        await signer.close()
    [seq] = await chained(owner, [left])
    assert await pending(owner, [left]) == 0 and anchor.seq >= seq


async def test_a_linking_that_cannot_run_does_not_fail_its_commit(
    database: DatabaseUnderTest, owner: asyncpg.Connection
) -> None:
    """The linking goes in the COMMIT's round trip: when it cannot run (here the chain's head is
    held past the statement timeout), the commit it follows still succeeds, its record stays
    pending, and the next commit links it."""
    held, after = f"held-{uuid.uuid4().hex[:8]}", f"after-{uuid.uuid4().hex[:8]}"
    async with database.app_pool(max_size=2, statement_timeout_ms=200) as short:
        holder = owner.transaction()
        await holder.start()
        await owner.execute("SELECT 1 FROM lighthouse.audit_chain_head WHERE id = 1 FOR UPDATE")
        try:
            async with UnitOfWork(short, WRITER.database_settings()) as uow:
                await AuditRepository(uow).append(entry(held))
        finally:
            await holder.rollback()
        assert await pending(owner, [held]) == 1 and await chained(owner, [held]) == []
        async with UnitOfWork(short, WRITER.database_settings()) as uow:
            await AuditRepository(uow).append(entry(after))
    seqs = await chained(owner, [held, after])
    assert len(seqs) == 2 and seqs[1] == seqs[0] + 1
    assert await pending(owner, [held, after]) == 0


async def test_a_failed_transaction_is_never_reported_committed(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    """A statement that failed outside a savepoint leaves the transaction unable to commit
    (PostgreSQL would answer COMMIT with a silent rollback): closing it raises, nothing it
    wrote is kept, and the connection goes back to the pool clean."""
    request = f"failed-{uuid.uuid4().hex[:8]}"
    uow = UnitOfWork(pool, WRITER.database_settings())
    await AuditRepository(uow).append(entry(request))
    with pytest.raises(asyncpg.DivisionByZeroError):
        await uow.fetchval("SELECT 1 / 0")
    with pytest.raises(asyncpg.InFailedSQLTransactionError):
        await uow.close(commit=True)
    assert await pending(owner, [request]) == 0 and await chained(owner, [request]) == []
    async with pool.acquire() as connection:
        assert not connection.is_in_transaction()


async def test_a_record_sent_with_the_commit_is_stored_as_it_was_made(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    """A unit of work's record travels as literals in the COMMIT's round trip: every column
    comes back exactly as the entry has it (text a caller chose included), and the chain holds."""
    request = f"literal-{uuid.uuid4().hex[:8]}"
    made = AuditEntry.of(
        Principal(subject="o'neil $q$ \\ 高雄", kind=PrincipalKind.STAFF, bureau_code="PWB"),
        request_id=request, category="graphql", operation="Board $q1$;\n--", decision="PARTIAL",
        policy_version="v'1", resource_ids=["Incident:1", "x'y", "$q$"], policy_ids=[],
        personal_data=True, document_hash="sha256:ab", details={"variables": {"q": "'; --"}},
    )  # fmt: skip
    async with UnitOfWork(pool, WRITER.database_settings()) as uow:
        await AuditRepository(uow).append(made)
    stored = await owner.fetchrow(
        "SELECT occurred_at, request_id, subject, client_id, bureau, principal_kind, category,"
        " operation, document_hash, resource_ids, decision, policy_ids, policy_version,"
        " personal_data, payload FROM lighthouse.audit_record WHERE request_id = $1",
        request,
    )
    assert tuple(stored.values()) == append_arguments(made)
    outcome = await verify_chain(AuditRepository(owner), 1, None)
    assert outcome.intact, outcome
