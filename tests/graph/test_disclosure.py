"""Nothing outside the caller's view reaches them, not even in an error; and what the caller
sends wrong is their bad input, never an internal error."""

from __future__ import annotations

import base64
import json

import asyncpg
import pytest

from tests.graph.helpers import ERROR_FIELDS, global_id
from tests.support import GraphQLClient

MARK_DUPLICATE = """
mutation($input: MarkDuplicateInput!) {
  markDuplicate(input: $input) { __typename ERRORS }
}
""".replace("ERRORS", ERROR_FIELDS)


async def incident(
    owner: asyncpg.Connection,
    bureau: str,
    status: str = "VERIFIED",
    *,
    duplicate_of: int | None = None,
) -> tuple[int, int]:
    row = await owner.fetchrow(
        "INSERT INTO lighthouse.incident (title, category, status, closing_reason, source,"
        " responsible_bureau_id, duplicate_of_id, latitude, longitude, reported_at, due_at,"
        " created_by, closed_at) SELECT '揭露', 'POTHOLE', $1, CASE WHEN $1 = 'CLOSED' THEN 'DUPLICATE' END,"
        " 'STAFF', b.id, $3, 22.62, 120.30, now(), now(), 'test',"
        " CASE WHEN $1 = 'CLOSED' THEN now() END FROM lighthouse.bureau b"
        " WHERE b.code = $2 RETURNING id, version",
        status,
        bureau,
        duplicate_of,
    )
    assert row is not None
    return int(row["id"]), int(row["version"])


@pytest.mark.parametrize("original_bureau", ["POLICE", "PUBLIC_WORKS"])
async def test_mark_duplicate_names_the_original_only_if_the_caller_sees_it(
    client: GraphQLClient, owner: asyncpg.Connection, original_bureau: str
) -> None:
    original, _ = await incident(owner, original_bureau)
    canonical, _ = await incident(owner, "PUBLIC_WORKS", "CLOSED", duplicate_of=original)
    target, version = await incident(owner, "PUBLIC_WORKS")
    result = (
        await client.data(
            MARK_DUPLICATE,
            {
                "input": {
                    "id": global_id("Incident", target),
                    "expectedVersion": version,
                    "duplicateOf": global_id("Incident", canonical),
                }
            },
        )
    )["markDuplicate"]
    assert result["__typename"] == "InvalidInput"
    named = str(original) in result["message"].split("duplicate", 1)[1]
    # Public Works sees its own incidents, not the police's.
    assert named is (original_bureau == "PUBLIC_WORKS"), result["message"]


async def test_several_operations_need_an_operation_name(client: GraphQLClient) -> None:
    document = "query A { me { subject } } query B { bureaus { code } }"
    body = await client.execute(document)
    assert body.get("data") is None
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "operation name" in body["errors"][0]["message"]
    response = await client.http.post(
        "/graphql",
        json={"query": document, "operationName": "B"},
        headers={"authorization": f"Bearer {client.token}"},
    )
    assert list(response.json()["data"]) == ["bureaus"]


def cursor(*values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("incidents", cursor("NEWEST_FIRST", {"t": 5}, 1)),
        ("incidents", cursor("NEWEST_FIRST", "2026-11-30T00:00:00+00:00", 1)),
        ("incidents", cursor("NEWEST_FIRST", {"t": "2026-11-30T00:00:00"}, 1)),
        ("incidents", cursor("NEWEST_FIRST", {"t": "2026-11-30T00:00:00+00:00"}, "x")),
        ("incidents", cursor("NEWEST_FIRST", {"t": "2026-11-30T00:00:00+00:00"}, 2**64)),
        ("incidents", cursor("NEWEST_FIRST", {"t": "2026-11-30T00:00:00+00:00"}, True)),
        ("assets", cursor("CODE", 5, 1)),
        ("assets", cursor("CODE", "A-1", [1])),
    ],
)
async def test_a_well_encoded_cursor_with_wrong_values_is_bad_input(
    city: GraphQLClient, field: str, value: str
) -> None:
    body = await city.execute(
        f"query($after: String) {{ {field}(first: 1, after: $after) {{ edges {{ cursor }} }} }}",
        {"after": value},
    )
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT", body
    assert body["errors"][0]["extensions"]["field"] == "after"
