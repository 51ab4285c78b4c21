"""Every workflow action in every status, through the graph, on PostgreSQL, against the rule book.

The expectations are written here, from README's workflow and ARCHITECTURE's lifecycle, and never
read from ``api.domain.lifecycle``: a test that asks the production table what is allowed agrees
with any change made to it (letting REOPEN start from CLOSED passed the old version of this file).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.graph.helpers import act, bureau_ids, incident_in, key_of
from tests.support import GraphQLClient

# status → action → the status it leads to. Anything not listed is forbidden.
#   DETECTED ─verify→ VERIFIED ─dispatch→ DISPATCHED ─startWork→ IN_PROGRESS ─resolve→ RESOLVED
#   ─close(FIXED)→ CLOSED; close / transfer / markDuplicate from DETECTED, VERIFIED and DISPATCHED;
#   reopen from RESOLVED back to IN_PROGRESS.
# The rule book does not say where a transfer leaves an incident; the receiving bureau decides
# again, so a dispatched incident goes back to VERIFIED (its work orders are cancelled) and an
# unverified or verified one keeps its status.
RULE_BOOK: dict[str, dict[str, str]] = {
    "DETECTED": {
        "VERIFY": "VERIFIED",
        "CLOSE": "CLOSED",
        "TRANSFER": "DETECTED",
        "MARK_DUPLICATE": "CLOSED",
    },
    "VERIFIED": {
        "DISPATCH": "DISPATCHED",
        "CLOSE": "CLOSED",
        "TRANSFER": "VERIFIED",
        "MARK_DUPLICATE": "CLOSED",
    },
    "DISPATCHED": {
        "START_WORK": "IN_PROGRESS",
        "CLOSE": "CLOSED",
        "TRANSFER": "VERIFIED",
        "MARK_DUPLICATE": "CLOSED",
    },
    "IN_PROGRESS": {"RESOLVE": "RESOLVED"},
    "RESOLVED": {"CLOSE": "CLOSED", "REOPEN": "IN_PROGRESS"},
    "CLOSED": {},
}
# The reasons closeIncident takes in each status: FIXED only after RESOLVED; DUPLICATE never (it
# is markDuplicate's).
WITHOUT_FIX = frozenset({"FALSE_POSITIVE", "NOT_RESPONSIBLE", "TRANSFERRED"})
CLOSING_REASONS: dict[str, frozenset[str]] = {
    "DETECTED": WITHOUT_FIX,
    "VERIFIED": WITHOUT_FIX,
    "DISPATCHED": WITHOUT_FIX,
    "RESOLVED": frozenset({"FIXED"}),
}
# Open311's classes: open, fixed (RESOLVED) and closed.
STATUS_CLASS = {
    "DETECTED": "OPEN",
    "VERIFIED": "OPEN",
    "DISPATCHED": "OPEN",
    "IN_PROGRESS": "OPEN",
    "RESOLVED": "FIXED",
    "CLOSED": "CLOSED",
}
ACTIONS = ["VERIFY", "DISPATCH", "START_WORK", "RESOLVE", "REOPEN", "TRANSFER", "MARK_DUPLICATE"]
REASONS = ["FIXED", "FALSE_POSITIVE", "DUPLICATE", "NOT_RESPONSIBLE", "TRANSFERRED"]

# Every cell: each action in each status, and closeIncident once per closing reason.
CELLS = [
    pytest.param(status, action, None, id=f"{status}-{action}")
    for status in RULE_BOOK
    for action in ACTIONS
] + [
    pytest.param(status, "CLOSE", reason, id=f"{status}-CLOSE({reason})")
    for status in RULE_BOOK
    for reason in REASONS
]


def allowed(status: str, action: str, reason: str | None) -> bool:
    if action not in RULE_BOOK[status]:
        return False
    return action != "CLOSE" or reason in CLOSING_REASONS[status]


async def _extra(client: GraphQLClient, action: str, reason: str | None) -> dict[str, Any]:
    if action == "TRANSFER":
        return {"toBureauId": (await bureau_ids(client))["ENVIRONMENTAL_PROTECTION"]}
    if action == "MARK_DUPLICATE":
        canonical = await incident_in(client, "VERIFIED", title="原案")
        return {"duplicateOf": canonical["id"]}
    if action == "CLOSE":
        return {"reason": reason}
    return {}


async def _history(owner: asyncpg.Connection, incident_id: str) -> list[tuple[str, str, str]]:
    rows = await owner.fetch(
        "SELECT kind, from_status, to_status FROM incident_event WHERE incident_id = $1 ORDER BY id",
        key_of(incident_id),
    )
    return [tuple(row) for row in rows]


@pytest.mark.parametrize(("status", "action", "reason"), CELLS)
async def test_transition(
    client: GraphQLClient,
    owner: asyncpg.Connection,
    status: str,
    action: str,
    reason: str | None,
) -> None:
    incident = await incident_in(client, status)
    extra = await _extra(client, action, reason)
    before = await _history(owner, incident["id"])

    result = await act(client, action, incident, **extra)

    after = await _history(owner, incident["id"])
    if allowed(status, action, reason):
        expected = RULE_BOOK[status][action]
        assert "incident" in result, result
        moved = result["incident"]
        closing_reason = {"CLOSE": reason, "MARK_DUPLICATE": "DUPLICATE"}.get(action)
        assert (moved["status"], moved["statusClass"], moved["closingReason"]) == (
            expected,
            STATUS_CLASS[expected],
            closing_reason,
        )
        assert moved["version"] == incident["version"] + 1
        assert sorted(moved["allowedActions"]) == sorted(RULE_BOOK[expected])
        responsible = "ENVIRONMENTAL_PROTECTION" if action == "TRANSFER" else "PUBLIC_WORKS"
        assert moved["responsibleBureau"]["code"] == responsible
        assert after == [*before, (action, status, expected)]
    else:
        assert result["__typename"] == "TransitionRejected", result
        assert result["code"] == "TRANSITION_REJECTED"
        assert (result["status"], result["action"]) == (status, action)
        assert sorted(result["allowedActions"]) == sorted(RULE_BOOK[status])
        assert after == before
        row = await owner.fetchrow(
            "SELECT status, version FROM incident WHERE id = $1", key_of(incident["id"])
        )
        assert (row["status"], row["version"]) == (status, incident["version"])
