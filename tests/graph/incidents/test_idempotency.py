"""Idempotency keys: retries of creating mutations create nothing twice."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.graph.helpers import act, create_incident, incident_in, key_of
from tests.support import GraphQLClient

pytestmark = pytest.mark.db


async def test_retry_with_same_key_returns_the_original(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    first = await create_incident(client, key="report-0001", title="人孔蓋下陷")
    again = await create_incident(client, key="report-0001", title="人孔蓋下陷")
    assert first["__typename"] == again["__typename"] == "IncidentCreated"
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["incident"]["id"] == first["incident"]["id"]
    assert await owner.fetchval("SELECT count(*) FROM incident") == 1
    assert await owner.fetchval("SELECT count(*) FROM incident_event") == 1


async def test_same_key_different_request_is_refused(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    await create_incident(client, key="report-0002", title="第一件")
    reused = await create_incident(client, key="report-0002", title="另一件")
    assert reused["__typename"] == "IdempotencyKeyReused"
    assert reused["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await owner.fetchval("SELECT count(*) FROM incident") == 1


async def test_concurrent_retries_create_one(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    results = await asyncio.gather(
        *(create_incident(client, key="report-0003", title="同時重送") for _ in range(8))
    )
    ids = {r["incident"]["id"] for r in results}
    assert len(ids) == 1
    assert sorted(r["replayed"] for r in results) == [False] + [True] * 7
    assert await owner.fetchval("SELECT count(*) FROM incident") == 1


async def test_failed_request_does_not_use_up_its_key(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    failed = await create_incident(client, key="report-0004", category="NO_SUCH_THING")
    assert failed["__typename"] == "InvalidInput"
    assert await owner.fetchval("SELECT count(*) FROM idempotency_key") == 0
    created = await create_incident(client, key="report-0004")
    assert created["__typename"] == "IncidentCreated"


async def test_dispatch_retry_creates_one_work_order(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    from tests.graph.helpers import action_document

    incident = await incident_in(client, "VERIFIED")
    variables = {
        "input": {
            "id": incident["id"],
            "expectedVersion": incident["version"],
            "workOrder": {"crew": "搶修班"},
        }
    }
    document = action_document("DISPATCH").replace(
        "result: dispatchIncident(input: $input)",
        'result: dispatchIncident(input: $input, idempotencyKey: "dispatch-1")',
    )
    first = (await client.data(document, variables))["result"]
    second = (await client.data(document, variables))["result"]
    assert first["__typename"] == second["__typename"] == "IncidentDispatched"
    assert first["workOrder"]["id"] == second["workOrder"]["id"]
    assert (first["replayed"], second["replayed"]) == (False, True)
    orders = await owner.fetchval(
        "SELECT count(*) FROM work_order WHERE incident_id = $1", key_of(incident["id"])
    )
    assert orders == 1
    # Without the key, the same request is simply stale.
    stale = await act(client, "DISPATCH", incident)
    assert stale["__typename"] == "VersionConflict"
