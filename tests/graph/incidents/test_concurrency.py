"""Optimistic concurrency: racing writers get one success and typed conflicts, never lost updates."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.graph.helpers import act, incident_in, key_of
from tests.support import GatewayProcess, GraphQLClient

pytestmark = pytest.mark.db


async def test_two_concurrent_dispatches_one_wins(
    client: GraphQLClient, gateway: GatewayProcess, owner: asyncpg.Connection
) -> None:
    # Each dispatcher has their own HTTP connection, as two people at two desks would.
    async with (
        httpx.AsyncClient(base_url=gateway.base_url) as first,
        httpx.AsyncClient(base_url=gateway.base_url) as second,
    ):
        for round_ in range(10):
            incident = await incident_in(client, "VERIFIED", title=f"競爭 {round_}")
            results = await asyncio.gather(
                act(
                    GraphQLClient(first, client.token),
                    "DISPATCH",
                    incident,
                    workOrder={"crew": "甲隊"},
                ),
                act(
                    GraphQLClient(second, client.token),
                    "DISPATCH",
                    incident,
                    workOrder={"crew": "乙隊"},
                ),
            )
            kinds = sorted(r["__typename"] for r in results)
            assert kinds == ["IncidentDispatched", "VersionConflict"], results
            conflict = next(r for r in results if r["__typename"] == "VersionConflict")
            assert conflict["expectedVersion"] == incident["version"]
            assert conflict["currentVersion"] == incident["version"] + 1
            key = key_of(incident["id"])
            events = await owner.fetchval(
                "SELECT count(*) FROM incident_event WHERE incident_id = $1 AND kind = 'DISPATCH'",
                key,
            )
            orders = await owner.fetchval(
                "SELECT count(*) FROM work_order WHERE incident_id = $1", key
            )
            version = await owner.fetchval("SELECT version FROM incident WHERE id = $1", key)
            assert (events, orders, version) == (1, 1, incident["version"] + 1)


async def test_stale_version_is_a_conflict_and_writes_nothing(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    incident = await incident_in(client, "VERIFIED")
    verified = await act(client, "DISPATCH", incident)
    assert verified["__typename"] == "IncidentDispatched"
    stale = await act(client, "CLOSE", incident, reason="FALSE_POSITIVE")
    assert stale["__typename"] == "VersionConflict"
    assert stale["currentVersion"] == incident["version"] + 1
    row = await owner.fetchrow(
        "SELECT status, version FROM incident WHERE id = $1", key_of(incident["id"])
    )
    assert (row["status"], row["version"]) == ("DISPATCHED", incident["version"] + 1)
    open_orders = await owner.fetchval(
        "SELECT count(*) FROM work_order WHERE incident_id = $1 AND status = 'OPEN'",
        key_of(incident["id"]),
    )
    assert open_orders == 1
