"""Audit forensics: attempts are findable by their target, and every way of tampering with the
chain shows — a truncation whose head was rewound through the signed anchors kept outside."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import orjson
import pytest

from api.audit.entries import MIRRORED, AuditEntry
from api.auth.keys import KeyRing
from api.auth.principal import Principal, PrincipalKind
from api.db.pool import connect
from api.repositories.audit import AuditRepository, append_arguments, chain_pending
from api.repositories.oauth import OAuthRepository
from api.services.audit_chain import AuditAnchors, verify_chain
from api.settings import OAuthSettings, Settings
from tests.conftest import _drop_database, make_database
from tests.graph.helpers import global_id
from tests.support import REPOSITORY, DatabaseUnderTest, GraphQLClient

pytestmark = pytest.mark.db

RECORDS = 30
ISSUER = "https://lighthouse.test"


async def test_a_probe_of_an_invisible_incident_is_recorded_with_its_target(
    client: GraphQLClient, as_: Any, owner: asyncpg.Connection
) -> None:
    police = await owner.fetchval(
        "INSERT INTO lighthouse.incident (title, category, status, source, responsible_bureau_id,"
        " latitude, longitude, reported_at, due_at, created_by) SELECT '探測', 'ILLEGAL_PARKING',"
        " 'VERIFIED', 'STAFF', id, 22.6, 120.3, now(), now(), 'test' FROM lighthouse.bureau"
        " WHERE code = 'POLICE' RETURNING id"
    )
    response = await client.http.post(
        "/graphql",
        json={
            "query": "mutation($input: IncidentStepInput!) { verifyIncident(input: $input) {"
            " __typename ... on Error { code } } }",
            "variables": {"input": {"id": global_id("Incident", police), "expectedVersion": 1}},
        },
        headers={"authorization": f"Bearer {client.token}"},
    )
    assert response.json()["data"]["verifyIncident"]["__typename"] == "NotFound"
    record = await owner.fetchrow(
        "SELECT resource_ids, payload FROM audit_record WHERE request_id = $1",
        response.headers["x-request-id"],
    )
    assert f"Incident:{police}" in record["resource_ids"]
    assert orjson.loads(record["payload"])["details"]["outcome"] == "NOT_FOUND"
    found = await as_("auditor").data(
        "query($r: String) { auditRecords(first: 5, filter: {resource: $r}) { edges { node {"
        " subject details } } } }",
        {"r": f"Incident:{police}"},
    )
    subjects = [e["node"]["subject"] for e in found["auditRecords"]["edges"]]
    assert "pwb-supervisor" in subjects


# --- the chain, on a database of its own (these tests tamper with it) --------------------------


@pytest.fixture
def chain_database(server_url: str) -> Iterator[DatabaseUnderTest]:
    import asyncio

    created = make_database(server_url)
    yield created
    asyncio.run(_drop_database(server_url, created.name))


@pytest.fixture
async def chain(chain_database: DatabaseUnderTest) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to a database holding a chain of RECORDS records: the first ten
    appended one at a time and linked in one batch (as concurrent commits are), the rest in
    two groups (as a group of admissions appends them)."""
    connection = await connect(chain_database.owner_url, Settings(), "forensics")
    principal = Principal(subject="forensics", kind=PrincipalKind.STAFF)
    entries = [
        AuditEntry.of(
            principal,
            request_id=f"r{number}",
            category="graphql",
            operation=f"op{number}",
            decision="ALLOW",
            policy_version="test",
        )
        for number in range(RECORDS)
    ]
    for entry in entries[:10]:
        await connection.execute(
            "SELECT lighthouse.append_audit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
            " $12, $13, $14, $15)",
            *append_arguments(entry),
        )
    await chain_pending(connection)  # ten pending records linked in one batch
    await AuditRepository(connection).append_many(entries[10:13])
    await AuditRepository(connection).append_many([])
    await AuditRepository(connection).append_many(entries[13:])
    try:
        yield connection
    finally:
        await connection.close()


async def verify(connection: asyncpg.Connection) -> Any:
    return await verify_chain(AuditRepository(connection), 1, None)


async def tamper(connection: asyncpg.Connection, *statements: str) -> None:
    """Run ``statements`` as the owner would have to: with the append-only trigger off."""
    await connection.execute("ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only")
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.execute("ALTER TABLE audit_record ENABLE TRIGGER audit_record_append_only")


async def test_an_untouched_chain_is_intact(chain: asyncpg.Connection) -> None:
    outcome = await verify(chain)
    assert (outcome.intact, outcome.checked, outcome.last_seq) == (True, RECORDS, RECORDS)
    # Grouped records are chained in the order they were given, after what came before.
    operations = await chain.fetch("SELECT seq, operation FROM audit_record ORDER BY seq")
    assert [(r["seq"], r["operation"]) for r in operations] == [
        (n + 1, f"op{n}") for n in range(RECORDS)
    ]


@pytest.mark.parametrize(
    ("statements", "broken", "reason"),
    [
        (["DELETE FROM audit_record WHERE seq = 12"], 12, "record 12 is missing"),
        # The first ten records were linked in one batch (chain_audits): one from its middle.
        (["DELETE FROM audit_record WHERE seq = 5"], 5, "record 5 is missing"),
        (
            ["UPDATE audit_record SET prev_hash = sha256('x') WHERE seq = 7"],
            7,
            "does not link",
        ),
        (["UPDATE audit_record SET subject = 'someone' WHERE seq = 9"], 9, "column subject"),
        (
            [f"DELETE FROM audit_record WHERE seq = {RECORDS}"],
            RECORDS,
            "records are missing",
        ),
        (
            ["UPDATE audit_chain_head SET last_hash = sha256('forged')"],
            RECORDS,
            "head does not match",
        ),
        (
            [
                "INSERT INTO audit_record SELECT seq + 1, occurred_at, request_id, subject,"
                " client_id, bureau, principal_kind, category, operation, document_hash,"
                " resource_ids, decision, policy_ids, policy_version, personal_data, payload,"
                " prev_hash, hash FROM audit_record ORDER BY seq DESC LIMIT 1"
            ],
            RECORDS + 1,
            "past the chain's head",
        ),
    ],
    ids=["a-deleted-record", "a-record-deleted-from-a-batch", "a-relinked-record", "an-edited-column", "the-newest-deleted",
         "a-forged-head", "a-record-past-the-head"],
)  # fmt: skip
async def test_tampering_shows(
    chain: asyncpg.Connection, statements: list[str], broken: int, reason: str
) -> None:
    await tamper(chain, *statements)
    outcome = await verify(chain)
    assert not outcome.intact
    assert outcome.first_broken_seq == broken
    assert reason in (outcome.reason or "")


# For each column the record's hash covers (the payload mirrors it): a value other than the
# record's, as SQL over the row. The records of `chain` are a staff member's, with no client,
# bureau or document, nothing returned and no decision's policies.
ONE_COLUMN_EDITS = {
    "occurred_at": "occurred_at + interval '1 second'",
    "request_id": "'forged'",
    "subject": "'someone-else'",
    "client_id": "'forged-client'",
    "bureau": "'POLICE'",
    "principal_kind": "'auditor'",
    "category": "'rest'",
    "operation": "'forged'",
    "document_hash": "repeat('ab', 32)",
    "resource_ids": "ARRAY['Incident:1']",
    "decision": "'DENY'",
    "policy_ids": "ARRAY['incidents.list']",
    "policy_version": "'forged'",
    "personal_data": "true",
}
# The columns of audit_record the chain itself is made of, besides the mirrored ones.
CHAIN_COLUMNS = {"seq", "payload", "prev_hash", "hash"}


async def test_every_column_of_a_record_is_covered_by_its_hash(chain: asyncpg.Connection) -> None:
    """A column neither mirrored in the payload nor part of the chain could be edited unseen;
    and each mirrored column has its one-column edit below."""
    columns = await chain.fetch(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'lighthouse' AND table_name = 'audit_record'"
    )
    assert {row["column_name"] for row in columns} == set(MIRRORED) | CHAIN_COLUMNS
    assert set(ONE_COLUMN_EDITS) == set(MIRRORED)


@pytest.mark.parametrize("column", MIRRORED)
async def test_an_edit_of_one_column_alone_shows(chain: asyncpg.Connection, column: str) -> None:
    victim = 17
    before = await chain.fetchval(f"SELECT {column} FROM audit_record WHERE seq = {victim}")
    await tamper(
        chain, f"UPDATE audit_record SET {column} = {ONE_COLUMN_EDITS[column]} WHERE seq = {victim}"
    )
    after = await chain.fetchval(f"SELECT {column} FROM audit_record WHERE seq = {victim}")
    assert after != before, f"the edit of {column} changed nothing"
    outcome = await verify(chain)
    assert not outcome.intact
    assert outcome.first_broken_seq == victim
    assert outcome.reason == f"its column {column} differs from what was recorded"


async def anchors(connection: asyncpg.Connection) -> AuditAnchors:
    settings = Settings(oauth=OAuthSettings(issuer=ISSUER))
    keys = KeyRing(settings)
    oauth = OAuthRepository(connection)
    await keys.ensure_signing_key(oauth)
    return AuditAnchors(AuditRepository(connection), oauth, keys, ISSUER)


async def test_a_truncation_with_a_rewound_head_fails_the_anchor(
    chain: asyncpg.Connection,
) -> None:
    signer = await anchors(chain)
    anchor = await signer.publish()
    assert anchor.seq == RECORDS
    assert (await signer.check(anchor.token)).holds
    # The owner, triggers off, removes the newest records and rewinds the head to match:
    # the chain itself looks intact...
    await tamper(
        chain,
        "DELETE FROM audit_record WHERE seq > 20",
        "UPDATE audit_chain_head SET last_seq = 20,"
        " last_hash = (SELECT hash FROM audit_record WHERE seq = 20)",
    )
    assert (await verify(chain)).intact
    # ...but the anchor kept elsewhere does not hold.
    check = await signer.check(anchor.token)
    assert not check.holds and "records were removed" in check.reason


async def test_an_anchor_whose_record_was_rewritten_fails(chain: asyncpg.Connection) -> None:
    signer = await anchors(chain)
    anchor = await signer.publish()
    await tamper(chain, f"UPDATE audit_record SET hash = sha256('x') WHERE seq = {RECORDS}")
    check = await signer.check(anchor.token)
    assert not check.holds and "differs" in check.reason


async def test_a_forged_anchor_is_refused(chain: asyncpg.Connection) -> None:
    signer = await anchors(chain)
    token = (await signer.publish()).token
    header, payload, signature = token.split(".")
    forged = ".".join(
        (header, payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB"), signature)
    )
    assert not (await signer.check(forged)).holds
    assert not (await signer.check("not a token")).holds


def lighthouse(database: DatabaseUnderTest, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LIGHTHOUSE_DATABASE_URL": database.app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": database.owner_url,
        "LIGHTHOUSE_OAUTH_ISSUER": ISSUER,
        "LIGHTHOUSE_ENVIRONMENT": "test",
    }
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *arguments],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_anchor_commands(
    chain: asyncpg.Connection, chain_database: DatabaseUnderTest
) -> None:
    published = lighthouse(chain_database, "audit", "anchor")
    assert published.returncode == 0, published.stderr
    token = published.stdout.strip().splitlines()[-1]
    held = lighthouse(chain_database, "audit", "check-anchor", token)
    assert held.returncode == 0 and "holds" in held.stderr, held.stderr
    await tamper(chain, "DELETE FROM audit_record WHERE seq = 5")
    broken = lighthouse(chain_database, "audit", "check-anchor", token)
    assert broken.returncode == 1
    assert "record 5 is missing" in broken.stderr
    stored = await chain.fetchval("SELECT count(*) FROM audit_anchor")
    assert stored == 1
