"""Auditors' queries over many records: ``auditRecords`` paged past one page under every filter,
and ``verifyAuditChain`` over ranges, across the batches it checks the chain in.

The records are appended cheaply, in one transaction, through the same ``append_audit()`` the
gateway uses (as the schema owner), under a subject of their own and at times long past, so
that filters pick out exactly them whatever else the session has recorded.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from api.audit.entries import AuditEntry
from api.repositories.audit import APPEND, append_arguments, chain_pending
from api.services.audit_chain import VERIFY_BATCH
from tests.support import DatabaseUnderTest, GraphQLClient

pytestmark = pytest.mark.db

COUNT = 2_050  # more than two verification batches, and more than one read of the chain
START = datetime(2001, 1, 1, tzinfo=UTC)
DECISIONS = {0: "DENY", 1: "PARTIAL"}  # by index % 10; the rest ALLOW

RECORDS = """
query Records($first: Int, $after: String, $filter: AuditFilterInput) {
  auditRecords(first: $first, after: $after, filter: $filter) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { seq subject category decision resourceIds occurredAt details } }
  }
}
"""
VERIFY = """
query Verify($from: Int!, $to: Int) {
  verifyAuditChain(fromSeq: $from, toSeq: $to) {
    intact checked firstSeq lastSeq firstBrokenSeq reason
  }
}
"""


@dataclass(frozen=True)
class Probe:
    """What was appended: record ``i`` has sequence number ``first_seq + i``."""

    subject: str
    resource_base: int
    first_seq: int

    @property
    def last_seq(self) -> int:
        return self.first_seq + COUNT - 1

    def seq(self, index: int) -> int:
        return self.first_seq + index

    def resource(self, index: int) -> str:
        return f"Incident:{self.resource_base + index % 7}"


def decision(index: int) -> str:
    return DECISIONS.get(index % 10, "ALLOW")


def category(index: int) -> str:
    return "token" if index % 3 == 0 else "graphql"


def occurred(index: int) -> datetime:
    return START + timedelta(minutes=index)


@pytest.fixture(scope="module")
def probe(database: DatabaseUnderTest) -> Probe:
    subject = f"audit-probe-{uuid.uuid4().hex[:8]}"
    resource_base = random.randrange(10**12, 2 * 10**12)

    async def append() -> int:
        owner = await asyncpg.connect(database.owner_url)
        try:
            async with owner.transaction():
                entries = [
                    AuditEntry(
                        occurred_at=occurred(i),
                        request_id=f"probe-{i}",
                        subject=subject,
                        client_id=None,
                        bureau="PUBLIC_WORKS",
                        principal_kind="staff",
                        category=category(i),
                        operation=f"Probe{i % 4}",
                        document_hash=None,
                        resource_ids=[f"Incident:{resource_base + i % 7}"],
                        decision=decision(i),
                        policy_ids=["incidents.list"],
                        policy_version="probe",
                        personal_data=False,
                        details={"probe": i},
                    )
                    for i in range(COUNT)
                ]
                await owner.executemany(APPEND, [append_arguments(e) for e in entries])
                await chain_pending(owner)  # linked in this transaction, one unbroken run
                first = await owner.fetchval(
                    "SELECT min(seq) FROM lighthouse.audit_record WHERE subject = $1", subject
                )
                span = await owner.fetchval(
                    "SELECT max(seq) - min(seq) + 1 FROM lighthouse.audit_record WHERE subject = $1",
                    subject,
                )
                assert span == COUNT  # appended under the chain's lock: one unbroken run
                return int(first)
        finally:
            await owner.close()

    return Probe(subject, resource_base, asyncio.run(append()))


@pytest.fixture
def auditor(as_: Callable[[str], GraphQLClient]) -> GraphQLClient:
    return as_("auditor")


async def every_page(
    auditor: GraphQLClient, filter: dict[str, Any], first: int = 100
) -> tuple[list[dict[str, Any]], int]:
    """Every record the filter matches, page by page (newest first), and how many pages."""
    nodes: list[dict[str, Any]] = []
    after = None
    pages = 0
    while True:
        variables = {"first": first, "after": after, "filter": filter}
        connection = (await auditor.data(RECORDS, variables))["auditRecords"]
        info = connection["pageInfo"]
        assert info["hasPreviousPage"] is (after is not None)
        assert len(connection["edges"]) <= first
        if connection["edges"]:
            assert info["endCursor"] == connection["edges"][-1]["cursor"]
        nodes += [edge["node"] for edge in connection["edges"]]
        pages += 1
        if not info["hasNextPage"]:
            return nodes, pages
        after = info["endCursor"]


def seqs(probe: Probe, match: Callable[[int], bool]) -> list[int]:
    """The sequence numbers of the probe records ``match`` picks, newest first."""
    return [probe.seq(i) for i in reversed(range(COUNT)) if match(i)]


async def test_one_subject_pages_through_all_its_records(
    auditor: GraphQLClient, probe: Probe
) -> None:
    nodes, pages = await every_page(auditor, {"subject": probe.subject, "category": "token"})
    assert [n["seq"] for n in nodes] == seqs(probe, lambda i: category(i) == "token")
    assert pages == 7  # 684 records, 100 a page
    assert {n["subject"] for n in nodes} == {probe.subject}
    newest = nodes[0]
    index = newest["seq"] - probe.first_seq
    assert newest["details"] == {"probe": index}
    assert newest["occurredAt"] == occurred(index).isoformat()
    assert newest["resourceIds"] == [probe.resource(index)]


@pytest.mark.parametrize(
    ("name", "given", "match"),
    [
        ("decision", {"decision": "DENY"}, lambda i: decision(i) == "DENY"),
        ("partial graphql", {"decision": "PARTIAL", "category": "graphql"},
         lambda i: decision(i) == "PARTIAL" and category(i) == "graphql"),
        ("resource", {"resource": 3}, lambda i: i % 7 == 3),
        ("time", {"occurredFrom": 100, "occurredBefore": 350}, lambda i: 100 <= i < 350),
        ("everything", {"decision": "ALLOW", "category": "token", "resource": 5,
                        "occurredFrom": 1000, "occurredBefore": 2000},
         lambda i: decision(i) == "ALLOW" and category(i) == "token" and i % 7 == 5
         and 1000 <= i < 2000),
    ],
)  # fmt: skip
async def test_filters_page_past_one_page(
    auditor: GraphQLClient,
    probe: Probe,
    name: str,
    given: dict[str, Any],
    match: Callable[[int], bool],
) -> None:
    filter: dict[str, Any] = {"subject": probe.subject, **given}
    if "resource" in given:
        filter["resource"] = probe.resource(given["resource"])
    for bound in ("occurredFrom", "occurredBefore"):
        if bound in given:
            filter[bound] = occurred(given[bound]).isoformat()
    nodes, pages = await every_page(auditor, filter, first=25)
    expected = seqs(probe, match)
    assert [n["seq"] for n in nodes] == expected, name
    assert pages == -(-len(expected) // 25) > 1


async def test_a_filter_matching_nothing_is_one_empty_page(
    auditor: GraphQLClient, probe: Probe
) -> None:
    nodes, pages = await every_page(
        auditor,
        {"subject": probe.subject, "occurredBefore": START.isoformat()},
    )
    assert (nodes, pages) == ([], 1)


async def test_records_pages_are_bounded(auditor: GraphQLClient, probe: Probe) -> None:
    body = await auditor.execute(RECORDS, {"first": 101})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    assert body["errors"][0]["extensions"]["field"] == "first"


async def verify(auditor: GraphQLClient, from_seq: int, to_seq: int | None) -> dict[str, Any]:
    result: dict[str, Any] = (await auditor.data(VERIFY, {"from": from_seq, "to": to_seq}))[
        "verifyAuditChain"
    ]
    return result


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (10, 19),  # a few records inside the run
        (0, VERIFY_BATCH - 1),  # exactly one batch
        (0, VERIFY_BATCH),  # one more than a batch
        (VERIFY_BATCH - 5, VERIFY_BATCH + 5),  # a range straddling where a batch would end
        (1, COUNT - 1),  # past two batches and past one read of the chain (2,000 rows)
    ],
)
async def test_ranges_of_the_chain_verify(
    auditor: GraphQLClient, probe: Probe, start: int, end: int
) -> None:
    from_seq, to_seq = probe.seq(start), probe.seq(end)
    result = await verify(auditor, from_seq, to_seq)
    assert result == {
        "intact": True,
        "checked": to_seq - from_seq + 1,
        "firstSeq": from_seq,
        "lastSeq": to_seq,
        "firstBrokenSeq": None,
        "reason": None,
    }


async def test_a_range_past_the_head_stops_at_the_head(
    auditor: GraphQLClient, probe: Probe, owner: asyncpg.Connection
) -> None:
    head = await owner.fetchval("SELECT max(seq) FROM audit_record")
    result = await verify(auditor, probe.seq(COUNT - 3), head + 1_000_000)
    assert result["intact"] is True
    # Only records present when the verification began are checked (it records itself after).
    assert result["lastSeq"] >= head
    assert result["checked"] == result["lastSeq"] - probe.seq(COUNT - 3) + 1


async def test_the_whole_chain_verifies_from_the_first_record(
    auditor: GraphQLClient, probe: Probe
) -> None:
    result = (await auditor.data("{ verifyAuditChain { intact checked firstSeq lastSeq } }"))[
        "verifyAuditChain"
    ]
    assert (result["intact"], result["firstSeq"]) == (True, 1)
    assert result["lastSeq"] >= probe.last_seq
    assert result["checked"] == result["lastSeq"]


@pytest.mark.parametrize(
    ("bounds", "field"),
    [
        ({"from": 0, "to": None}, "fromSeq"),
        ({"from": -5, "to": 10}, "fromSeq"),
        ({"from": 20, "to": 10}, "toSeq"),  # backwards
        ({"from": 1, "to": 0}, "toSeq"),
        ({"from": 1, "to": -5}, "toSeq"),
        ({"from": 2**31 - 1, "to": None}, "fromSeq"),  # after the newest record
    ],
)
async def test_invalid_ranges_are_refused(
    auditor: GraphQLClient, probe: Probe, bounds: dict[str, int | None], field: str
) -> None:
    body = await auditor.execute(VERIFY, bounds)
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    assert error["extensions"]["field"] == field


async def test_only_auditors_read_and_verify(
    client: GraphQLClient, probe: Probe, as_: Callable[[str], GraphQLClient]
) -> None:
    for who in (client, as_("city-viewer")):
        for document, variables in (
            (RECORDS, {"filter": {"subject": probe.subject}}),
            (VERIFY, {"from": probe.first_seq, "to": probe.first_seq + 5}),
        ):
            body = await who.execute(document, variables)
            assert body["data"] is None
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


ANCHORS = "query($last: Int!) { auditAnchors(last: $last) { seq hash anchoredAt token } }"


async def test_the_newest_anchors_are_read_newest_first_by_auditors_only(
    auditor: GraphQLClient,
    client: GraphQLClient,
    owner: asyncpg.Connection,
    probe: Probe,
) -> None:
    # An anchor of the probe's first record, as the gateway's schedule would sign one.
    head = await owner.fetchval(
        "SELECT hash FROM lighthouse.audit_record WHERE seq = $1", probe.first_seq
    )
    await owner.execute(
        "INSERT INTO lighthouse.audit_anchor (seq, hash, anchored_at, signature)"
        " VALUES ($1, $2, clock_timestamp(), 'signed-in-the-test')",
        probe.first_seq, head,
    )  # fmt: skip
    stored = await owner.fetch(
        "SELECT seq, encode(hash, 'hex') AS hash, signature FROM lighthouse.audit_anchor"
        " ORDER BY anchored_at DESC LIMIT 2"
    )
    read = (await auditor.data(ANCHORS, {"last": 2}))["auditAnchors"]
    assert [(a["seq"], a["hash"], a["token"]) for a in read] == [tuple(r) for r in stored]
    assert read[0]["token"] == "signed-in-the-test"
    refused = await auditor.execute(ANCHORS, {"last": 101})
    assert refused["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    forbidden = await client.execute(ANCHORS, {"last": 1})
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
