"""Row-level security on ``open311_request``, on its own (migration 0011's two policies).

The gateway reads a submitted request only beside the incident it became, and writes one only
for the app that submitted it, so its HTTP tests cannot tell whether PostgreSQL would refuse a
read or a write the gateway never makes. These tests connect as the application role, set the
caller's identity as the gateway does (``set_identity``: ``set_config(..., true)`` in the
transaction), and read and write in SQL: a request row is seen only with its incident, and
written only by the app named in it, for an incident that app sees. Each attempt runs in its own
transaction, rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest

from api.auth.api_keys import client_principal, digest, new_key
from api.auth.principal import Principal, PrincipalKind
from api.db.unit_of_work import set_identity
from api.repositories.open311 import Open311Clients

pytestmark = pytest.mark.db

RLS_REFUSAL = "new row violates row-level security policy"
REFUSED = "refused by the row policy"
ARRANGE_INCIDENT = """
INSERT INTO lighthouse.incident (title, category, status, source, responsible_bureau_id,
    reporting_bureau_id, latitude, longitude, reported_at, due_at, created_by)
SELECT '市民通報', $1, 'VERIFIED', 'CITIZEN_1999', b.id, b.id, 22.6273, 120.3014, now(),
    now() + interval '2 days', 'arranged'
FROM lighthouse.bureau b WHERE b.code = $2
RETURNING id
"""
RECORD = "INSERT INTO open311_request (incident_id, token, client_id) VALUES ($1, $2, $3)"


@dataclass(frozen=True, slots=True)
class World:
    """Rows arranged by the schema owner: two Public Works apps and an Environmental Protection
    app; an incident of each bureau submitted through Open311, and one of each not (yet)."""

    public_works_app: Principal
    other_public_works_app: Principal
    environment_app: Principal
    public_works_app_id: int
    other_public_works_app_id: int
    public_works_submitted: int
    environment_submitted: int
    public_works_fresh: int
    environment_fresh: int


async def _client(owner: asyncpg.Connection, bureau: str) -> tuple[Principal, int]:
    clients = Open311Clients(owner)
    key = new_key()
    client_id = await clients.issue(
        f"rls-{bureau.lower()}-{uuid.uuid4().hex[:8]}", digest(key), bureau, True, "test"
    )
    client = await clients.by_digest(digest(key))
    assert client is not None and client.id == client_id
    return client_principal(client), client_id


@pytest.fixture
async def world(owner: asyncpg.Connection, clean: None) -> World:
    public_works_app, public_works_id = await _client(owner, "PUBLIC_WORKS")
    other_app, other_id = await _client(owner, "PUBLIC_WORKS")
    environment_app, environment_id = await _client(owner, "ENVIRONMENTAL_PROTECTION")

    async def incident(category: str, bureau: str) -> int:
        found: int = await owner.fetchval(ARRANGE_INCIDENT, category, bureau)
        return found

    pwb_submitted = await incident("POTHOLE", "PUBLIC_WORKS")
    epb_submitted = await incident("ILLEGAL_DUMPING", "ENVIRONMENTAL_PROTECTION")
    await owner.execute(RECORD, pwb_submitted, uuid.uuid4(), public_works_id)
    await owner.execute(RECORD, epb_submitted, uuid.uuid4(), environment_id)
    return World(
        public_works_app,
        other_app,
        environment_app,
        public_works_id,
        other_id,
        pwb_submitted,
        epb_submitted,
        await incident("POTHOLE", "PUBLIC_WORKS"),
        await incident("ILLEGAL_DUMPING", "ENVIRONMENTAL_PROTECTION"),
    )


@asynccontextmanager
async def acting_as(
    app: asyncpg.Connection, principal: Principal
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction carrying ``principal``'s identity, set as the gateway sets it; rolled
    back."""
    transaction = app.transaction()
    await transaction.start()
    try:
        await set_identity(app, principal.database_settings())
        yield app
    finally:
        await transaction.rollback()


async def seen(connection: asyncpg.Connection) -> set[int]:
    rows = await connection.fetch("SELECT incident_id FROM open311_request")
    return {row["incident_id"] for row in rows}


async def sees_incident(connection: asyncpg.Connection, incident_id: int) -> bool:
    found: bool = await connection.fetchval(
        "SELECT count(*) = 1 FROM incident WHERE id = $1", incident_id
    )
    return found


async def attempt(connection: asyncpg.Connection, incident_id: int, client_id: int) -> int | str:
    """The rows the insert wrote, or REFUSED when the row policy rejected the new row (any other
    error is not the outcome under test)."""
    try:
        status: str = await connection.execute(RECORD, incident_id, uuid.uuid4(), client_id)
    except asyncpg.InsufficientPrivilegeError as error:
        if RLS_REFUSAL not in str(error):
            raise
        return REFUSED
    return int(status.split()[-1])


async def test_a_request_is_seen_only_with_the_incident_it_became(
    app: asyncpg.Connection, world: World
) -> None:
    async with acting_as(app, world.public_works_app) as connection:
        # The incident's own policy hides Environmental Protection's incident from a Public
        # Works app: its request row must be hidden with it, whoever submitted it.
        assert not await sees_incident(connection, world.environment_submitted)
        assert await seen(connection) == {world.public_works_submitted}
        hidden = await connection.fetchval(
            "SELECT count(*) FROM open311_request WHERE incident_id = $1",
            world.environment_submitted,
        )
        assert hidden == 0
    async with acting_as(app, world.other_public_works_app) as connection:
        # Another app of the bureau sees the bureau's request (the incident decides, not the
        # app that submitted it).
        assert await seen(connection) == {world.public_works_submitted}
    async with acting_as(app, world.environment_app) as connection:
        assert await seen(connection) == {world.environment_submitted}
    async with acting_as(app, Principal.anonymous()) as connection:
        assert await seen(connection) == set()


async def test_a_request_is_written_only_by_its_app_for_an_incident_it_sees(
    app: asyncpg.Connection, world: World
) -> None:
    staff = Principal(
        subject="pwb-supervisor",
        kind=PrincipalKind.STAFF,
        bureau_id=world.public_works_app.bureau_id,
        bureau_code="PUBLIC_WORKS",
        roles=frozenset({"supervisor"}),
        scopes=frozenset({"incidents:read", "incidents:write"}),
    )
    own, other = world.public_works_app_id, world.other_public_works_app_id
    cases: list[tuple[str, Principal, int, int, int | str]] = [
        ("the app, for an incident it sees", world.public_works_app, world.public_works_fresh,
         own, 1),
        ("in another app's name", world.public_works_app, world.public_works_fresh, other,
         REFUSED),
        ("for an incident the app does not see", world.public_works_app,
         world.environment_fresh, own, REFUSED),
        ("by staff, not an app", staff, world.public_works_fresh, own, REFUSED),
        ("anonymously", Principal.anonymous(), world.public_works_fresh, own, REFUSED),
    ]  # fmt: skip
    outcomes = {}
    for name, principal, incident_id, client_id, _ in cases:
        async with acting_as(app, principal) as connection:
            if name == "for an incident the app does not see":
                assert not await sees_incident(connection, incident_id)
            outcomes[name] = await attempt(connection, incident_id, client_id)
    assert outcomes == {name: expected for name, *_, expected in cases}
