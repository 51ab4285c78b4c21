"""An auditor's export: the records the graph shows for a filter, as CSV or JSON Lines, and the
export itself in the trail."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from api.audit.entries import AuditEntry
from api.auth.principal import Principal, PrincipalKind
from api.db.pool import connect
from api.repositories.audit import AuditRepository
from api.settings import Settings
from tests.auth.test_oauth_server import cli
from tests.graph.helpers import create_incident, key_of
from tests.support import DatabaseUnderTest, GatewayProcess, GraphQLClient

pytestmark = pytest.mark.db

RECORDS = """
query($filter: AuditFilterInput) {
  auditRecords(first: 50, filter: $filter) { totalCount edges { node { seq operation } } }
}
"""


async def test_an_export_holds_what_the_graph_shows_and_is_recorded(
    database: DatabaseUnderTest,
    gateway: GatewayProcess,
    client: GraphQLClient,
    as_: Callable[[str], GraphQLClient],
    owner: asyncpg.Connection,
) -> None:
    since = datetime.now(UTC).isoformat()
    created = (await create_incident(client))["incident"]
    for _ in range(3):
        await client.data("query Look($id: ID!) { incident(id: $id) { title } }",
                          {"id": created["id"]})  # fmt: skip
    shown = (
        await as_("auditor").data(
            RECORDS, {"filter": {"resource": created["id"], "occurredFrom": since}}
        )
    )["auditRecords"]
    seqs = [edge["node"]["seq"] for edge in shown["edges"]]
    assert shown["totalCount"] == len(seqs) == 4

    lines = cli(database, gateway, "audit", "export", "--resource", created["caseNumber"],
                "--since", since, "--format", "jsonl")  # fmt: skip
    assert lines.returncode == 0, lines.stderr
    exported = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [record["seq"] for record in exported] == seqs  # newest first, as the graph
    assert [record["operation"] for record in exported] == ["Look"] * 3 + ["Create"]
    assert all(f"Incident:{key_of(created['id'])}" in r["resource_ids"] for r in exported)
    assert {len(record["hash"]) for record in exported} == {64}
    table = cli(database, gateway, "audit", "export", "--resource",
                f"Incident:{key_of(created['id'])}", "--since", since)  # fmt: skip
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [int(row["seq"]) for row in rows] == seqs
    assert rows[0]["operation"] == "Look" and rows[0]["decision"] == "ALLOW"
    # Each export is in the trail: who, and what it asked for.
    recorded = await owner.fetch(
        "SELECT subject, principal_kind, payload FROM audit_record WHERE operation = 'audit export'"
        " ORDER BY seq DESC LIMIT 2"
    )
    assert [r["principal_kind"] for r in recorded] == ["auditor", "auditor"]
    notes = json.loads(recorded[1]["payload"])["details"]["notes"]
    assert notes == [f"exported 4 record(s) as jsonl (resource=Incident:{key_of(created['id'])}, "
                     f"occurred_from={datetime.fromisoformat(since)})"]  # fmt: skip


async def test_an_export_of_nothing_a_form_not_taken_or_a_bad_decision_says_so(
    database: DatabaseUnderTest, gateway: GatewayProcess
) -> None:
    nothing = cli(database, gateway, "audit", "export", "--subject", "nobody-ever", "--format",
                  "jsonl")  # fmt: skip
    assert nothing.returncode == 0 and nothing.stdout == "", nothing.stderr
    assert "0 record(s) exported" in nothing.stderr
    for arguments, said in (
        (("--resource", "incident 42"), "--resource: name a resource as recorded"),
        (("--decision", "MAYBE"), "--decision is ALLOW, DENY or PARTIAL"),
    ):
        refused = cli(database, gateway, "audit", "export", *arguments)
        assert refused.returncode == 2 and said in " ".join(refused.stderr.split()), refused.stderr


async def test_an_export_longer_than_a_batch_holds_every_record_once(
    database: DatabaseUnderTest, gateway: GatewayProcess
) -> None:
    """Written batch by batch (500 at a time, keyset by sequence): 1,001 records, each once, in
    order, none lost at a batch's edge."""
    subject = f"export-{uuid.uuid4().hex[:8]}"
    connection = await connect(database.owner_url, Settings(), "export-test")
    try:
        principal = Principal(subject=subject, kind=PrincipalKind.STAFF)
        entries = [
            AuditEntry.of(principal, request_id=f"e{n}", category="graphql",
                          operation=f"op{n}", decision="ALLOW", policy_version="test")
            for n in range(1001)
        ]  # fmt: skip
        await AuditRepository(connection).append_many(entries)
    finally:
        await connection.close()
    done = cli(database, gateway, "audit", "export", "--subject", subject, "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    operations = [json.loads(line)["operation"] for line in done.stdout.splitlines()]
    assert operations == [f"op{n}" for n in reversed(range(1001))]
