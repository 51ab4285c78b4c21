"""`Incident.permittedActions`: what a frontend shows as buttons. The oracle is the action
itself: for each principal and each action the incident's state allows, a fresh incident in
that state is acted on, and the action is permitted exactly when the gateway does not answer
`Forbidden`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.graph.helpers import act, bureau_ids, create_incident, incident_in
from tests.support import GraphQLClient
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

PERMITTED = """
query Permitted($id: ID!) {
  incident(id: $id) { status allowedActions permittedActions permittedClosingReasons }
}
"""
# The reasons each status admits (README's workflow), tried one by one.
REASONS = {
    "DETECTED": ["FALSE_POSITIVE", "NOT_RESPONSIBLE", "TRANSFERRED"],
    "VERIFIED": ["FALSE_POSITIVE", "NOT_RESPONSIBLE", "TRANSFERRED"],
    "RESOLVED": ["FIXED"],
}
PRINCIPALS = ("pwb-supervisor", "pwb-dispatcher", "pwb-viewer", "jsc-operator")


@pytest.mark.parametrize("status", ["DETECTED", "VERIFIED", "RESOLVED"])
async def test_permitted_actions_are_the_actions_the_gateway_lets_each_caller_take(
    status: str, client: GraphQLClient, http: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    bureaus = await bureau_ids(client)
    seen: dict[str, list[str]] = {}
    for name in PRINCIPALS:
        caller = GraphQLClient(http, tokens.named(name))
        probe = await incident_in(client, status)
        read = (await caller.data(PERMITTED, {"id": probe["id"]}))["incident"]
        permitted = read["permittedActions"]
        assert set(permitted) <= set(read["allowedActions"])
        taken: list[str] = []
        closed_with: list[str] = []
        tries: list[tuple[str, dict[str, Any]]] = [
            (action, {}) for action in read["allowedActions"] if action != "CLOSE"
        ]
        if "CLOSE" in read["allowedActions"]:
            tries += [("CLOSE", {"reason": reason}) for reason in REASONS[status]]
        for action, extra in tries:
            target = await incident_in(client, status)
            if action == "TRANSFER":
                extra["toBureauId"] = bureaus["WATER_RESOURCES"]
            if action == "MARK_DUPLICATE":
                extra["duplicateOf"] = (await create_incident(client))["incident"]["id"]
            result = await act(caller, action, target, **extra)
            if result["__typename"] == "Forbidden":
                continue
            assert "incident" in result, (name, action, result)
            if action == "CLOSE":
                closed_with.append(extra["reason"])
            if action not in taken:
                taken.append(action)
        in_order = [action for action in read["allowedActions"] if action in taken]
        assert permitted == in_order, (name, status, read)
        assert sorted(read["permittedClosingReasons"]) == sorted(closed_with), (name, read)
        seen[name] = permitted
    # The rule book's people: the viewer may do nothing, the supervisor everything the state
    # allows, the dispatcher all but closing.
    assert seen["pwb-viewer"] == []
    assert (
        seen["pwb-supervisor"]
        == (await client.data(PERMITTED, {"id": probe["id"]}))["incident"]["allowedActions"]
    )
    assert "CLOSE" not in seen["pwb-dispatcher"]
