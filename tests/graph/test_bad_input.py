"""Bad input gets a clear, typed error and changes nothing."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.graph.helpers import act, create_incident, global_id, incident_in
from tests.support import GraphQLClient

COUNTS = """
SELECT (SELECT count(*) FROM incident) AS incidents, (SELECT count(*) FROM incident_event) AS events,
       (SELECT count(*) FROM work_order) AS work_orders, (SELECT count(*) FROM asset) AS assets,
       (SELECT count(*) FROM idempotency_key) AS keys, (SELECT coalesce(sum(version), 0) FROM incident) AS versions
"""


@pytest.fixture
async def unchanged(owner: asyncpg.Connection, client: GraphQLClient) -> Any:
    """Checks, after the test, that the database is as it was before the bad request."""
    await incident_in(client, "VERIFIED")
    before = dict(await owner.fetchrow(COUNTS))
    yield
    assert dict(await owner.fetchrow(COUNTS)) == before


def _only_error(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("data") in (None, {}) or all(
        v is None for v in (body["data"] or {}).values()
    ), body
    [error] = body["errors"]
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("overrides", "typename", "field"),
    [
        (
            {"location": {"wgs84": {"latitude": 91.0, "longitude": 120.3}}},
            "InvalidInput",
            "input.location.latitude",
        ),
        (
            {"location": {"wgs84": {"latitude": 22.6, "longitude": -200.0}}},
            "InvalidInput",
            "input.location.longitude",
        ),
        ({"location": {"twd97": {"x": 180000.0, "y": 10.0}}}, "InvalidInput", "input.location.y"),
        ({"location": None}, "InvalidInput", "location"),
        ({"category": "UFO_SIGHTING"}, "InvalidInput", "category"),
        ({"title": "   "}, "InvalidInput", "title"),
        ({"title": "x" * 201}, "InvalidInput", "title"),
        ({"reportedAt": "2999-01-01T00:00:00+08:00"}, "InvalidInput", "reportedAt"),
        ({"reporter": {"email": "not-an-address"}}, "InvalidInput", "reporter.email"),
        ({"assetId": global_id("Asset", 999999)}, "NotFound", None),
        ({"assetId": global_id("Incident", 1)}, "InvalidInput", "input.assetId"),
        ({"assetId": "!!!"}, "InvalidInput", "input.assetId"),
    ],
)
async def test_create_incident_rejects(
    client: GraphQLClient,
    unchanged: None,
    overrides: dict[str, Any],
    typename: str,
    field: str | None,
) -> None:
    result = await create_incident(client, key="bad-request", **overrides)
    assert result["__typename"] == typename, result
    assert result["message"]
    if field is not None:
        assert result["field"] == field


async def test_unknown_incident_in_a_mutation_is_not_found(
    client: GraphQLClient, unchanged: None
) -> None:
    ghost = {"id": global_id("Incident", 424242), "version": 1}
    result = await act(client, "VERIFY", ghost)
    assert result["__typename"] == "NotFound"
    assert result["code"] == "NOT_FOUND"


async def test_unknown_ids_in_queries_are_null(client: GraphQLClient, unchanged: None) -> None:
    data = await client.data(
        "query($id: ID!, $asset: ID!) { incident(id: $id) { id } asset(id: $asset) { id } }",
        {"id": global_id("Incident", 424242), "asset": global_id("Asset", 7)},
    )
    assert data == {"incident": None, "asset": None}


async def test_malformed_id_in_a_query_is_a_typed_error(
    client: GraphQLClient, unchanged: None
) -> None:
    body = await client.execute('{ incident(id: "not-base64!") { id } }')
    assert _only_error(body)["extensions"] == {"code": "INVALID_INPUT", "field": "id"}


@pytest.mark.parametrize("cursor", ["garbage", "WyJPTERFU1RfRklSU1QiLDFd", "W10", ""])
async def test_malformed_cursor(client: GraphQLClient, unchanged: None, cursor: str) -> None:
    body = await client.execute(
        "query($after: String) { incidents(first: 5, after: $after) { edges { cursor } } }",
        {"after": cursor},
    )
    assert _only_error(body)["extensions"] == {"code": "INVALID_INPUT", "field": "after"}


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ("first: 101", "first"),
        ("last: 1000", "last"),
        ("first: -1", "first"),
        ("first: 2, last: 2", "first"),
    ],
)
async def test_page_size_limits(
    client: GraphQLClient, unchanged: None, arguments: str, field: str
) -> None:
    body = await client.execute(f"{{ incidents({arguments}) {{ edges {{ cursor }} }} }}")
    error = _only_error(body)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": field}


async def test_too_deep_query_is_rejected(client: GraphQLClient, unchanged: None) -> None:
    nested = "duplicateOf { " * 12 + "id" + " }" * 12
    body = await client.execute(f"{{ incidents(first: 1) {{ edges {{ node {{ {nested} }} }} }} }}")
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_too_many_aliases_are_rejected(client: GraphQLClient, unchanged: None) -> None:
    aliases = " ".join(f"a{i}: bureaus {{ code }}" for i in range(40))
    body = await client.execute(f"{{ {aliases} }}")
    assert "aliases" in body["errors"][0]["message"]


async def test_too_many_tokens_are_rejected(client: GraphQLClient, unchanged: None) -> None:
    fields = " ".join(["code"] * 3000)
    body = await client.execute(f"{{ bureaus {{ {fields} }} }}")
    assert "token" in body["errors"][0]["message"].lower()


async def test_mutations_are_refused_over_get(http: httpx.AsyncClient, unchanged: None) -> None:
    response = await http.get(
        "/graphql",
        params={
            "query": 'mutation { verifyIncident(input: {id: "x", expectedVersion: 1}) { __typename } }'
        },
    )
    assert response.status_code in (400, 405)


async def test_dispatch_with_bad_work_order_writes_nothing(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    incident = await incident_in(client, "VERIFIED")
    before = dict(await owner.fetchrow(COUNTS))
    result = await act(client, "DISPATCH", incident, workOrder={"crew": ""})
    assert result["__typename"] == "InvalidInput"
    assert result["field"] == "workOrder.crew"
    assert dict(await owner.fetchrow(COUNTS)) == before


async def test_transfer_to_the_same_bureau_is_refused(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    incident = await incident_in(client, "VERIFIED")
    before = dict(await owner.fetchrow(COUNTS))
    result = await act(client, "TRANSFER", incident, toBureauId=incident["responsibleBureau"]["id"])
    assert result["__typename"] == "InvalidInput"
    assert dict(await owner.fetchrow(COUNTS)) == before


async def test_duplicate_of_itself_or_of_a_duplicate_is_refused(client: GraphQLClient) -> None:
    first = await incident_in(client, "VERIFIED")
    second = await incident_in(client, "VERIFIED")
    assert (await act(client, "MARK_DUPLICATE", first, duplicateOf=first["id"]))[
        "__typename"
    ] == "InvalidInput"
    marked = await act(client, "MARK_DUPLICATE", second, duplicateOf=first["id"])
    assert marked["incident"]["closingReason"] == "DUPLICATE"
    third = await incident_in(client, "VERIFIED")
    refused = await act(client, "MARK_DUPLICATE", third, duplicateOf=second["id"])
    assert refused["__typename"] == "InvalidInput"
    assert "itself a duplicate" in refused["message"]
