"""Every allowed and every forbidden workflow transition, through the graph, on PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from api.domain import lifecycle
from tests.graph.helpers import act, bureau_ids, incident_in, key_of
from tests.support import GraphQLClient

pytestmark = pytest.mark.db

STATUSES = [s.value for s in lifecycle.IncidentStatus]
ACTIONS = [
    "VERIFY",
    "DISPATCH",
    "START_WORK",
    "RESOLVE",
    "REOPEN",
    "CLOSE",
    "TRANSFER",
    "MARK_DUPLICATE",
]


async def _extra(client: GraphQLClient, action: str, status: str) -> dict[str, Any]:
    if action == "TRANSFER":
        return {"toBureauId": (await bureau_ids(client))["ENVIRONMENTAL_PROTECTION"]}
    if action == "MARK_DUPLICATE":
        canonical = await incident_in(client, "VERIFIED", title="原案")
        return {"duplicateOf": canonical["id"]}
    if action == "CLOSE":
        admitted = sorted(lifecycle.CLOSING_REASONS[lifecycle.IncidentStatus(status)])
        return {"reason": admitted[0] if admitted else "FIXED"}
    return {}


async def _history(owner: asyncpg.Connection, incident_id: str) -> list[asyncpg.Record]:
    return await owner.fetch(
        "SELECT kind, from_status, to_status FROM incident_event WHERE incident_id = $1 ORDER BY id",
        key_of(incident_id),
    )


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", ACTIONS)
async def test_transition(
    client: GraphQLClient, owner: asyncpg.Connection, status: str, action: str
) -> None:
    incident = await incident_in(client, status)
    extra = await _extra(client, action, status)
    before = await _history(owner, incident["id"])

    result = await act(client, action, incident, **extra)

    after = await _history(owner, incident["id"])
    allowed = lifecycle.TRANSITIONS[lifecycle.IncidentStatus(status)]
    if lifecycle.IncidentAction(action) in allowed:
        expected = allowed[lifecycle.IncidentAction(action)].value
        assert "incident" in result, result
        assert result["incident"]["status"] == expected
        assert result["incident"]["version"] == incident["version"] + 1
        assert len(after) == len(before) + 1
        assert (after[-1]["kind"], after[-1]["from_status"], after[-1]["to_status"]) == (
            action,
            status,
            expected,
        )
    else:
        assert result["__typename"] == "TransitionRejected", result
        assert result["code"] == "TRANSITION_REJECTED"
        assert result["status"] == status
        assert result["allowedActions"] == [a.value for a in allowed]
        assert after == before
        row = await owner.fetchrow(
            "SELECT status, version FROM incident WHERE id = $1",
            key_of(incident["id"]),
        )
        assert (row["status"], row["version"]) == (status, incident["version"])
