"""Every access is recorded in the same transaction, hash-chained, and auditors can check it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

from tests.graph.helpers import create_incident, key_of
from tests.support import DatabaseUnderTest, GraphQLClient

pytestmark = pytest.mark.db

VERIFY = "{ verifyAuditChain { intact checked firstBrokenSeq reason } }"
RECORDS = """
query($filter: AuditFilterInput) {
  auditRecords(first: 20, filter: $filter) {
    edges { node { seq subject operation category decision resourceIds policyIds policyVersion
                   personalData documentHash details } }
  }
}
"""


async def _last(owner: asyncpg.Connection) -> asyncpg.Record:
    return await owner.fetchrow("SELECT * FROM audit_record ORDER BY seq DESC LIMIT 1")


async def test_a_query_is_recorded_with_what_it_returned(
    client: GraphQLClient, owner: asyncpg.Connection, as_: Callable[[str], GraphQLClient]
) -> None:
    created = (await create_incident(client, title="稽核"))["incident"]
    document = "query Board { incidents(first: 5) { edges { node { id title } } } }"
    await client.data(document)
    record = await _last(owner)
    assert record["subject"] == "pwb-supervisor"
    assert record["bureau"] == "PUBLIC_WORKS"
    assert record["operation"] == "Board"
    assert record["category"] == "graphql"
    assert record["decision"] == "ALLOW"
    assert record["resource_ids"] == [f"Incident:{key_of(created['id'])}"]
    assert "incidents.list" in record["policy_ids"]
    assert record["document_hash"] == hashlib.sha256(document.encode()).hexdigest()
    version = (await as_("auditor").data("{ policySet { version } }"))["policySet"]["version"]
    assert record["policy_version"] == version


async def test_variables_are_redacted(client: GraphQLClient, owner: asyncpg.Connection) -> None:
    await create_incident(client, title="秘密的標題", reporter={"name": "林志強"})
    record = await _last(owner)
    assert record["operation"] == "Create"
    payload = orjson.loads(record["payload"])
    assert payload["details"]["variables"] == ["input", "key"]
    assert "秘密的標題" not in record["payload"] and "林志強" not in record["payload"]


async def test_denials_and_personal_data_are_recorded(
    client: GraphQLClient, owner: asyncpg.Connection, as_: Callable[[str], GraphQLClient]
) -> None:
    created = await create_incident(client, source="CITIZEN_1999", reporter={"phone": "0912000111"})
    incident_id = created["incident"]["id"]
    await client.data(
        "query Pii($id: ID!) { incident(id: $id) { reporter { phone } } }", {"id": incident_id}
    )
    record = await _last(owner)
    assert record["personal_data"] is True
    assert f"Incident:{key_of(incident_id)}" in record["resource_ids"]
    await as_("pwb-dispatcher").execute(
        "query Masked($id: ID!) { incident(id: $id) { reporter { phone } } }", {"id": incident_id}
    )
    record = await _last(owner)
    assert (record["decision"], record["personal_data"]) == ("PARTIAL", False)
    nobody = await client.http.post(
        "/graphql", json={"query": "query Nobody { incidents(first: 1) { totalCount } }"}
    )
    assert nobody.status_code == 401, nobody.text  # told to sign in: refused, and recorded
    record = await _last(owner)
    assert (record["subject"], record["decision"], record["operation"]) == (
        "anonymous",
        "DENY",
        "Nobody",
    )


async def test_auditors_search_and_verify(
    client: GraphQLClient, as_: Callable[[str], GraphQLClient]
) -> None:
    since = datetime.now(UTC).isoformat()
    created = (await create_incident(client))["incident"]
    auditor = as_("auditor")
    # Incident keys restart between tests; the trail does not, so look only at this test's time.
    resource = f"Incident:{key_of(created['id'])}"
    mine = await auditor.data(RECORDS, {"filter": {"resource": resource, "occurredFrom": since}})
    operations = [e["node"]["operation"] for e in mine["auditRecords"]["edges"]]
    assert operations == ["Create"]
    denied = await auditor.data(RECORDS, {"filter": {"decision": "DENY", "subject": "anonymous"}})
    assert all(e["node"]["decision"] == "DENY" for e in denied["auditRecords"]["edges"])
    result = (await auditor.data(VERIFY))["verifyAuditChain"]
    assert result["intact"] is True and result["checked"] > 0
    refused = await client.execute(VERIFY)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_tampering_is_detected(
    client: GraphQLClient,
    database: DatabaseUnderTest,
    as_: Callable[[str], GraphQLClient],
) -> None:
    await create_incident(client)
    auditor = as_("auditor")
    assert (await auditor.data(VERIFY))["verifyAuditChain"]["intact"] is True
    superuser = await asyncpg.connect(database.owner_url)
    try:
        # The record before the auditor's check (run alone, the test has made only a few), as
        # it was: it is put back at the end.
        victim = await superuser.fetchrow(
            "SELECT seq, payload, decision FROM lighthouse.audit_record"
            " ORDER BY seq DESC OFFSET 1 LIMIT 1"
        )
        assert victim is not None
        await superuser.execute(
            "ALTER TABLE lighthouse.audit_record DISABLE TRIGGER audit_record_append_only"
        )
        # The decision alone (an access recorded as refused made to look allowed, or the
        # reverse): the record's payload, which its hash covers, still says what was decided.
        forged = "DENY" if victim["decision"] == "ALLOW" else "ALLOW"
        try:
            await superuser.execute(
                "UPDATE lighthouse.audit_record SET decision = $2 WHERE seq = $1",
                victim["seq"], forged,
            )  # fmt: skip
            broken = (await auditor.data(VERIFY))["verifyAuditChain"]
            assert broken["intact"] is False
            assert broken["firstBrokenSeq"] == victim["seq"]
            assert broken["reason"] == "its column decision differs from what was recorded"
            # Rewriting the payload too does not help: the hash no longer matches.
            row = await superuser.fetchrow(
                "SELECT payload FROM lighthouse.audit_record WHERE seq = $1", victim["seq"]
            )
            payload = orjson.loads(row["payload"]) | {"decision": forged}
            await superuser.execute(
                "UPDATE lighthouse.audit_record SET payload = $2 WHERE seq = $1",
                victim["seq"], orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode(),
            )  # fmt: skip
            broken = (await auditor.data(VERIFY))["verifyAuditChain"]
            assert (broken["firstBrokenSeq"], broken["reason"]) == (
                victim["seq"],
                "its content does not match its hash",
            )
        finally:
            await superuser.execute(
                "UPDATE lighthouse.audit_record SET payload = $2, decision = $3 WHERE seq = $1",
                victim["seq"], victim["payload"], victim["decision"],
            )  # fmt: skip
            await superuser.execute(
                "ALTER TABLE lighthouse.audit_record ENABLE TRIGGER audit_record_append_only"
            )
    finally:
        await superuser.close()
    assert (await auditor.data(VERIFY))["verifyAuditChain"]["intact"] is True


async def test_the_application_cannot_rewrite_the_trail(database: DatabaseUnderTest) -> None:
    app = await asyncpg.connect(database.app_url)
    try:
        for statement in (
            "UPDATE lighthouse.audit_record SET decision = 'ALLOW'",
            "DELETE FROM lighthouse.audit_record",
            "INSERT INTO lighthouse.audit_record (seq) VALUES (0)",
            "UPDATE lighthouse.audit_chain_head SET last_seq = 0",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(statement)
    finally:
        await app.close()


async def test_policies_and_explanations_for_auditors(
    client: GraphQLClient, as_: Callable[[str], GraphQLClient]
) -> None:
    auditor = as_("auditor")
    policy_set = (
        await auditor.data("{ policySet { version text policies { id description file } } }")
    )["policySet"]
    ids = {p["id"] for p in policy_set["policies"]}
    assert {"incidents.view.own-bureau", "pii.responsible-bureau", "audit.read"} <= ids
    assert all(p["description"] for p in policy_set["policies"])
    versions = (await auditor.data("{ policyVersions { version } }"))["policyVersions"]
    assert policy_set["version"] in [v["version"] for v in versions]
    incident = (await create_incident(client))["incident"]
    explain = """
    query($p: PrincipalInput!, $a: String!, $r: String!) {
      explainAccess(principal: $p, action: $a, resource: $r) {
        allowed decision policies { id } reasons }
    }
    """
    police = {
        "kind": "staff",
        "bureauCode": "POLICE",
        "roles": ["viewer"],
        "scopes": ["incidents:read"],
    }
    pwb = police | {"bureauCode": "PUBLIC_WORKS"}
    denied = (await auditor.data(explain, {"p": police, "a": "ViewIncident", "r": incident["id"]}))[
        "explainAccess"
    ]
    assert (denied["allowed"], denied["decision"], denied["policies"]) == (False, "DENY", [])
    assert denied["reasons"] == [
        f'no policy permits ViewIncident on Lighthouse::Incident::"{key_of(incident["id"])}"'
        " for this principal (what no policy permits is denied)"
    ]
    allowed = (await auditor.data(explain, {"p": pwb, "a": "ViewIncident", "r": incident["id"]}))[
        "explainAccess"
    ]
    assert allowed["allowed"] is True
    assert {"id": "incidents.view.own-bureau"} in allowed["policies"]
    assert any(
        r.startswith("permitted by incidents.view.own-bureau: ") and len(r) > 50
        for r in allowed["reasons"]
    ), allowed["reasons"]
    # A misspelt action is refused, naming the actions there are (it read as "denied" before).
    misspelt = await auditor.execute(explain, {"p": pwb, "a": "ViewIncidnet", "r": incident["id"]})
    error = misspelt["errors"][0]
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "action"}
    assert "ViewIncidnet" in error["message"] and "ViewIncident, ViewLicence" in error["message"]
    refused = await client.execute(explain, {"p": pwb, "a": "ViewIncident", "r": incident["id"]})
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_auditors_name_a_resource_by_its_id_or_case_number_and_count_the_records(
    client: GraphQLClient, as_: Callable[[str], GraphQLClient]
) -> None:
    since = datetime.now(UTC).isoformat()
    created = (await create_incident(client))["incident"]
    for _ in range(2):
        await client.data("query Look($id: ID!) { incident(id: $id) { title } }",
                          {"id": created["id"]})  # fmt: skip
    auditor = as_("auditor")
    counted = """
    query($filter: AuditFilterInput) {
      auditRecords(first: 2, filter: $filter) { totalCount edges { node { seq operation } } }
    }
    """
    recorded = f"Incident:{key_of(created['id'])}"
    answers = [
        (await auditor.data(counted, {"filter": {"resource": given, "occurredFrom": since}}))[
            "auditRecords"
        ]
        for given in (recorded, created["id"], created["caseNumber"], f" {created['caseNumber']} ")
    ]
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0]["totalCount"] == 3  # its creation and the two looks, on a page of two
    assert [e["node"]["operation"] for e in answers[0]["edges"]] == ["Look", "Look"]
    for wrong in ("incident 42", "KH-", "Tm9wZQ=="):  # (the last: base64 of "Nope")
        refused = await auditor.execute(counted, {"filter": {"resource": wrong}})
        assert refused["errors"][0]["extensions"] == {
            "code": "INVALID_INPUT",
            "field": "filter.resource",
        }, wrong


async def test_a_document_the_limits_refuse_is_recorded_as_refused(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    deep = "query Deep { incidents { edges { node { " + "duplicateOf { " * 12 + "id"
    deep += " }" * 12 + " } } } }"
    body = await client.execute(deep)
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    record = await _last(owner)
    assert (record["operation"], record["decision"]) == ("Deep", "DENY")
    assert "depth" in orjson.loads(record["payload"])["details"]["refused"]
