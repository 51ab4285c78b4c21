"""Usage in the graph: a licence's usage records as a cursor connection (newest first, bounded
pages, typed errors for bad cursors and sizes), its daily totals, and the register of licensees;
a licensee sees its own company's and nothing of another's, the city sees all, and a list of
licences with their usage costs the same statements however long it is."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from api.domain.licensing import Licence
from tests.metering.support import MODEL, access_token, licensee_with_licence
from tests.support import DatabaseUnderTest, GatewayProcess, GraphQLClient
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

PAGE = """
query($first: Int, $after: String, $from: DateTime, $to: DateTime, $status: [UsageStatus!]) {
  licences { code usageRecords(first: $first, after: $after, from: $from, to: $to, status: $status) {
    edges { cursor node { requestId status inputTokens outputTokens images finishedAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }
"""
DAILY = """
query($from: Date, $to: Date) { licences { code dailyUsage(from: $from, to: $to) {
  day model status requests inputTokens outputTokens images } } }
"""
LICENSEES = "{ licensees { id code company taxId status contacts { name email } } }"


def officer(tokens: TokenFactory) -> str:
    return tokens.custom(subject="licensing-officer", kind="staff", scopes=["licensing:admin"])


async def add_records(
    database: DatabaseUnderTest, licence: Licence, finished: list[tuple[datetime, str, int]]
) -> list[tuple[datetime, uuid.UUID]]:
    """Usage records for ``licence`` (finished at, status, input tokens), written as the owner;
    their keys in the order the graph must give them (newest first, ties by request id)."""
    owner = await asyncpg.connect(database.owner_url)
    keys = []
    try:
        for at, status, tokens in finished:
            request_id = uuid.uuid4()
            charged = tokens if status == "OK" else 0
            await owner.execute(
                "INSERT INTO lighthouse.usage_record (request_id, licence_id, licensee_id,"
                " period_start, client_id, model, purpose, status, input_tokens, output_tokens,"
                " images, streamed, latency_ms, started_at, finished_at) VALUES ($1, $2, $3,"
                " date_trunc('month', $4::timestamptz), 'app', $5, 'parking-occupancy', $6, $7, $8,"
                " $9, false, 12, $4, $4)",
                request_id, licence.id, licence.licensee_id, at, MODEL, status, charged,
                charged // 2, 1 if charged else 0,
            )  # fmt: skip
            keys.append((at, request_id))
    finally:
        await owner.close()
    return sorted(keys, reverse=True)


def usage_of(data: dict[str, Any], code: str) -> dict[str, Any]:
    (licence,) = [lic for lic in data["licences"] if lic["code"] == code]
    return licence["usageRecords"]  # type: ignore[no-any-return]


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    [error] = body["errors"]
    return error["extensions"]  # type: ignore[no-any-return]


async def test_usage_records_page_newest_first_with_sound_cursors(
    gateway: GatewayProcess, database: DatabaseUnderTest, http: httpx.AsyncClient
) -> None:
    mine = await licensee_with_licence(database)
    theirs = await licensee_with_licence(database)
    now = datetime.now(UTC).replace(microsecond=0)
    # Seven records, three of them finished in the same microsecond: the request id breaks ties.
    same = now - timedelta(minutes=3)
    expected = await add_records(
        database,
        mine.licence,
        [
            (now - timedelta(minutes=1), "OK", 100),
            (now - timedelta(minutes=2), "FAILED", 0),
            (same, "OK", 10),
            (same, "OK", 20),
            (same, "CANCELLED", 0),
            (now - timedelta(minutes=4), "OK", 30),
            (now - timedelta(minutes=10), "OK", 40),
        ],
    )
    others = await add_records(database, theirs.licence, [(now, "OK", 5), (same, "OK", 6)])
    client = GraphQLClient(http, await access_token(gateway, mine))

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        data = await client.data(PAGE, {"first": 3, "after": cursor})
        page = usage_of(data, mine.licence.code)
        seen += [edge["node"]["requestId"] for edge in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] is (cursor is not None)
        if page["edges"]:
            assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        cursor = page["pageInfo"]["endCursor"]
    assert pages == 3
    assert seen == [str(request_id) for _, request_id in expected]
    assert not set(seen) & {str(request_id) for _, request_id in others}

    # Filters: by status, and by a window (from inclusive, to exclusive).
    data = await client.data(PAGE, {"status": ["FAILED", "CANCELLED"]})
    assert {e["node"]["status"] for e in usage_of(data, mine.licence.code)["edges"]} == {
        "FAILED", "CANCELLED"
    }  # fmt: skip
    window = {"from": same.isoformat(), "to": (now - timedelta(minutes=1)).isoformat()}
    data = await client.data(PAGE, window)
    assert len(usage_of(data, mine.licence.code)["edges"]) == 4  # the three ties and FAILED

    # The other company's client sees its own records only.
    other = GraphQLClient(http, await access_token(gateway, theirs))
    data = await other.data(PAGE, {})
    assert [lic["code"] for lic in data["licences"]] == [theirs.licence.code]
    assert [e["node"]["requestId"] for e in usage_of(data, theirs.licence.code)["edges"]] == [
        str(request_id) for _, request_id in others
    ]


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"first": 101}, "first"),
        ({"first": -1}, "first"),
        ({"after": "garbage"}, "after"),
        ({"after": ""}, "after"),
        # an incidents cursor, and a usage cursor whose request id is not a UUID
        ({"after": "WyJPTERFU1RfRklSU1QiLDFd"}, "after"),
        (
            {
                "after": "WyJ1c2FnZS1uZXdlc3QtZmlyc3QiLHsidCI6IjIwMjctMDEtMDFUMDA6MDA6MDArMDA6MDAifSwieCJd"
            },
            "after",
        ),
        ({"from": "2027-01-02T00:00:00+08:00", "to": "2027-01-01T00:00:00+08:00"}, "to"),
        ({"from": "2027-01-02T00:00:00"}, "from"),
    ],
)
async def test_bad_paging_arguments_are_typed_errors(
    gateway: GatewayProcess,
    database: DatabaseUnderTest,
    http: httpx.AsyncClient,
    variables: dict[str, Any],
    field: str,
) -> None:
    licensed = await licensee_with_licence(database)
    client = GraphQLClient(http, await access_token(gateway, licensed))
    assert only_error(await client.execute(PAGE, variables)) == {
        "code": "INVALID_INPUT", "field": field
    }  # fmt: skip


async def test_daily_usage_gives_the_rolled_up_totals_of_the_days_asked(
    gateway: GatewayProcess, database: DatabaseUnderTest, http: httpx.AsyncClient
) -> None:
    licensed = await licensee_with_licence(database)
    owner = await asyncpg.connect(database.owner_url)
    # Days long over: the roll-up (which continues after the latest day rolled up) is not moved.
    try:
        for day, status, requests, tokens in (
            (date(2020, 3, 1), "OK", 12, 1200),
            (date(2020, 3, 1), "FAILED", 2, 0),
            (date(2020, 3, 2), "OK", 3, 300),
            (date(2020, 4, 1), "OK", 9, 900),
        ):
            await owner.execute(
                "INSERT INTO lighthouse.usage_daily (licence_id, day, model, status, requests,"
                " input_tokens, output_tokens, images) VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
                licensed.licence.id, day, MODEL, status, requests, tokens, tokens // 10,
            )  # fmt: skip
    finally:
        await owner.close()
    client = GraphQLClient(http, await access_token(gateway, licensed))
    data = await client.data(DAILY, {"from": "2020-03-01", "to": "2020-03-31"})
    (licence,) = data["licences"]
    assert [
        (d["day"], d["status"], d["requests"], d["inputTokens"], d["outputTokens"])
        for d in licence["dailyUsage"]
    ] == [
        ("2020-03-01", "FAILED", 2, 0, 0),
        ("2020-03-01", "OK", 12, 1200, 120),
        ("2020-03-02", "OK", 3, 300, 30),
    ]
    # Without days: the month up to today, which holds none of these.
    assert (await client.data(DAILY))["licences"][0]["dailyUsage"] == []
    for variables in (
        {"from": "2020-03-02", "to": "2020-03-01"},
        {"from": "2019-01-01", "to": "2020-03-01"},
    ):
        assert only_error(await client.execute(DAILY, variables)) == {
            "code": "INVALID_INPUT", "field": "to"
        }  # fmt: skip


async def test_licensees_a_licensee_sees_its_own_company_the_city_all(
    gateway: GatewayProcess,
    database: DatabaseUnderTest,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
) -> None:
    mine = await licensee_with_licence(database)
    theirs = await licensee_with_licence(database)
    client = GraphQLClient(http, await access_token(gateway, mine))
    (seen,) = (await client.data(LICENSEES))["licensees"]
    assert seen["code"] == f"company-{mine.licence.code.removeprefix('LIC-')}"
    assert seen["contacts"] == [{"name": "Developer", "email": "dev@example.com"}]
    city = await GraphQLClient(http, officer(tokens)).data(LICENSEES)
    codes = [licensee["code"] for licensee in city["licensees"]]
    assert codes == sorted(codes)
    assert {seen["code"], f"company-{theirs.licence.code.removeprefix('LIC-')}"} <= set(codes)
    auditor = tokens.custom(subject="usage-auditor", kind="auditor", scopes=["usage:read"])
    assert len((await GraphQLClient(http, auditor).data(LICENSEES))["licensees"]) == len(codes)
    # Bureau staff without usage:read see none.
    staff = GraphQLClient(http, tokens.named("pwb-supervisor"))
    assert (await staff.data(LICENSEES))["licensees"] == []


def _statements(metrics: str, operation: str) -> tuple[float, float]:
    pattern = r'lighthouse_db_statements_per_operation_(sum|count)\{operation="%s"\} ([0-9.e+]+)'
    found = dict(re.findall(pattern % operation, metrics))
    return float(found.get("sum", 0)), float(found.get("count", 0))


async def _count(http: httpx.AsyncClient, client: GraphQLClient, name: str, document: str) -> float:
    before = _statements((await http.get("/metrics")).text, name)
    data = await client.data(document)
    assert len(data["licences"]) >= 3
    after = _statements((await http.get("/metrics")).text, name)
    assert after[1] == before[1] + 1
    return after[0] - before[0]


async def test_usage_of_every_licence_costs_a_fixed_number_of_statements(
    gateway: GatewayProcess,
    database: DatabaseUnderTest,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
) -> None:
    for _ in range(3):
        licensed = await licensee_with_licence(database)
        await add_records(database, licensed.licence, [(datetime.now(UTC), "OK", 7)])
    city = GraphQLClient(http, officer(tokens))
    plain = await _count(http, city, "Plain", "query Plain { licences { code } }")
    with_usage = await _count(
        http,
        city,
        "WithUsage",
        "query WithUsage { licences { code usageRecords(first: 2) { edges { node { requestId } } }"
        " dailyUsage { day } } }",
    )
    # Per field: the licences' holders (for Cedar) and one batch, whatever the count.
    assert with_usage - plain == 4, (plain, with_usage)
