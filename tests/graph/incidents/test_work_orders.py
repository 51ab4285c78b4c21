"""Work orders through the graph: another crew for a dispatched incident, and each crew's order
completed or cancelled on its own — with the incident's history recording every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from api.domain import lifecycle
from tests.graph.helpers import act, bureau_ids, global_id, incident_in, key_of
from tests.support import GraphQLClient

WORK_ORDER_FIELDS = """
fragment WorkOrderFields on WorkOrder {
  id status crew instructions dueAt createdBy finishedAt
  bureau { code }
  incident { id status version }
}
"""
ERRORS = """
... on Error { __typename message code }
... on InvalidInput { field }
... on NotFound { entity }
"""
CREATE = (
    WORK_ORDER_FIELDS
    + """
mutation Add($input: CreateWorkOrderInput!, $key: String) {
  createWorkOrder(input: $input, idempotencyKey: $key) {
    __typename
    ... on WorkOrderCreated { replayed workOrder { ...WorkOrderFields } }
    ... on TransitionRejected { status action allowedActions }
    ... on IdempotencyKeyReused { idempotencyKey }
    ERRORS
  }
}
""".replace("ERRORS", ERRORS)
)
FINISH = (
    WORK_ORDER_FIELDS
    + """
mutation Finish($input: FinishWorkOrderInput!) {
  result: FIELD(input: $input) {
    __typename
    ... on WorkOrderUpdated { workOrder { ...WorkOrderFields } }
    ERRORS
  }
}
""".replace("ERRORS", ERRORS)
)
EVENTS = """
query($id: ID!) {
  incident(id: $id) {
    status version
    events(order: OLDEST_FIRST) { kind fromStatus toStatus actor note data }
    workOrders { id status }
  }
}
"""


async def add_order(
    client: GraphQLClient,
    incident_id: str,
    *,
    key: str | None = None,
    **order: Any,
) -> dict[str, Any]:
    work_order = {"crew": "養護二隊", **order}
    data = await client.data(
        CREATE, {"input": {"incidentId": incident_id, "workOrder": work_order}, "key": key}
    )
    result: dict[str, Any] = data["createWorkOrder"]
    return result


async def finish(
    client: GraphQLClient, outcome: str, work_order_id: str, note: str = ""
) -> dict[str, Any]:
    field = {"COMPLETED": "completeWorkOrder", "CANCELLED": "cancelWorkOrder"}[outcome]
    data = await client.data(
        FINISH.replace("FIELD", field), {"input": {"id": work_order_id, "note": note}}
    )
    result: dict[str, Any] = data["result"]
    return result


async def history(client: GraphQLClient, incident_id: str) -> dict[str, Any]:
    incident: dict[str, Any] = (await client.data(EVENTS, {"id": incident_id}))["incident"]
    return incident


async def rows(owner: asyncpg.Connection, incident_id: str) -> tuple[int, int]:
    """How many work orders and events the incident has, counted in the database itself."""
    key = key_of(incident_id)
    orders = await owner.fetchval("SELECT count(*) FROM work_order WHERE incident_id = $1", key)
    events = await owner.fetchval("SELECT count(*) FROM incident_event WHERE incident_id = $1", key)
    return orders, events


async def dispatched(client: GraphQLClient) -> tuple[dict[str, Any], str]:
    """A dispatched incident and the work order its dispatch created."""
    verified = await incident_in(client, "VERIFIED")
    result = await act(client, "DISPATCH", verified)
    return result["incident"], result["workOrder"]["id"]


@pytest.mark.parametrize("status", ["DISPATCHED", "IN_PROGRESS"])
@pytest.mark.db
async def test_another_crew_joins_an_incident_under_way(
    client: GraphQLClient, owner: asyncpg.Connection, status: str
) -> None:
    incident = await incident_in(client, status)

    created = await add_order(client, incident["id"], instructions="封閉外側車道")

    assert created["__typename"] == "WorkOrderCreated", created
    assert created["replayed"] is False
    order = created["workOrder"]
    assert order["status"] == "OPEN"
    assert (order["crew"], order["instructions"]) == ("養護二隊", "封閉外側車道")
    assert order["createdBy"] == "pwb-supervisor"
    assert order["finishedAt"] is None
    assert order["bureau"] == {"code": "PUBLIC_WORKS"}
    # Without a due date of its own, the order is due when the incident is.
    assert order["dueAt"] == incident["dueAt"]
    # Adding a crew is no step of the incident: its status and version stay.
    assert order["incident"] == {
        "id": incident["id"],
        "status": status,
        "version": incident["version"],
    }
    seen = await history(client, incident["id"])
    assert order["id"] in [o["id"] for o in seen["workOrders"]]
    assert len(seen["workOrders"]) == 2  # the dispatch's order and this one
    last = seen["events"][-1]
    assert last == {
        "kind": "WORK_ORDER_CREATED",
        "fromStatus": status,
        "toStatus": status,
        "actor": "pwb-supervisor",
        "note": "",
        "data": {"work_order": key_of(order["id"])},
    }
    assert await rows(owner, incident["id"]) == (2, len(seen["events"]))


async def test_an_order_with_a_due_date_of_its_own_keeps_it(
    client: GraphQLClient,
) -> None:
    incident, _ = await dispatched(client)
    created = await add_order(client, incident["id"], dueAt="2030-01-02T03:04:05+08:00")
    assert created["workOrder"]["dueAt"] == "2030-01-01T19:04:05+00:00"


@pytest.mark.parametrize("status", ["DETECTED", "VERIFIED", "RESOLVED", "CLOSED"])
async def test_incidents_not_under_way_take_no_work_order(
    client: GraphQLClient, owner: asyncpg.Connection, status: str
) -> None:
    incident = await incident_in(client, status)
    before = await rows(owner, incident["id"])

    refused = await add_order(client, incident["id"])

    assert refused["__typename"] == "TransitionRejected", refused
    assert refused["code"] == "TRANSITION_REJECTED"
    assert refused["status"] == status
    assert refused["action"] == "add a work order to"
    allowed = lifecycle.allowed_actions(lifecycle.IncidentStatus(status))
    assert refused["allowedActions"] == [a.value for a in allowed]
    assert await rows(owner, incident["id"]) == before


async def test_a_retry_with_the_same_key_returns_the_original_order(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    incident, _ = await dispatched(client)
    first = await add_order(client, incident["id"], key="crew-0001")
    after_first = await rows(owner, incident["id"])
    again = await add_order(client, incident["id"], key="crew-0001")

    assert (first["__typename"], again["__typename"]) == ("WorkOrderCreated",) * 2
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["workOrder"]["id"] == first["workOrder"]["id"]
    assert after_first[0] == 2  # the dispatch's order and this one
    assert await rows(owner, incident["id"]) == after_first

    # The retry answers with what the key created even after the incident moved on (resolving
    # completed the order), instead of judging the request afresh.
    started = await act(client, "START_WORK", incident)
    await act(client, "RESOLVE", started["incident"])
    late = await add_order(client, incident["id"], key="crew-0001")
    assert late["__typename"] == "WorkOrderCreated", late
    assert late["replayed"] is True
    assert late["workOrder"]["id"] == first["workOrder"]["id"]
    assert late["workOrder"]["status"] == "COMPLETED"

    reused = await add_order(client, incident["id"], key="crew-0001", crew="另一隊")
    assert reused["__typename"] == "IdempotencyKeyReused"
    assert (reused["code"], reused["idempotencyKey"]) == ("IDEMPOTENCY_KEY_REUSED", "crew-0001")
    assert (await rows(owner, incident["id"]))[0] == 2


async def test_a_refused_request_does_not_use_up_its_key(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    incident = await incident_in(client, "VERIFIED")
    refused = await add_order(client, incident["id"], key="crew-0002")
    assert refused["__typename"] == "TransitionRejected"
    dispatched_now = await act(client, "DISPATCH", incident)
    created = await add_order(client, dispatched_now["incident"]["id"], key="crew-0002")
    assert created["__typename"] == "WorkOrderCreated"
    assert created["replayed"] is False


@pytest.mark.parametrize(
    ("order", "field"),
    [
        ({"crew": "   "}, "workOrder.crew"),
        ({"crew": "隊" * 201}, "workOrder.crew"),
        ({"instructions": "x" * 4001}, "workOrder.instructions"),
        ({"dueAt": "2030-01-02T03:04:05"}, "workOrder.dueAt"),
    ],
)
async def test_a_bad_work_order_is_refused_and_writes_nothing(
    client: GraphQLClient, owner: asyncpg.Connection, order: dict[str, Any], field: str
) -> None:
    incident, _ = await dispatched(client)
    before = await rows(owner, incident["id"])
    refused = await add_order(client, incident["id"], **order)
    assert refused["__typename"] == "InvalidInput", refused
    assert (refused["code"], refused["field"]) == ("INVALID_INPUT", field)
    assert await rows(owner, incident["id"]) == before


async def test_unknown_and_malformed_incidents(client: GraphQLClient) -> None:
    unknown = await add_order(client, global_id("Incident", 987654))
    assert (unknown["__typename"], unknown["entity"]) == ("NotFound", "incident")
    malformed = await add_order(client, global_id("Bureau", 1))
    assert (malformed["__typename"], malformed["field"]) == ("InvalidInput", "input.incidentId")
    no_order = await finish(client, "COMPLETED", global_id("WorkOrder", 987654))
    assert (no_order["__typename"], no_order["entity"]) == ("NotFound", "work order")


@pytest.mark.parametrize(
    ("outcome", "who"), [("COMPLETED", "pwb-dispatcher"), ("CANCELLED", "pwb-supervisor")]
)
@pytest.mark.db
async def test_finishing_one_order_leaves_the_incident_and_other_orders(
    client: GraphQLClient,
    owner: asyncpg.Connection,
    as_: Callable[[str], GraphQLClient],
    outcome: str,
    who: str,
) -> None:
    incident, first = await dispatched(client)
    second = (await add_order(client, incident["id"]))["workOrder"]["id"]

    done = await finish(as_(who), outcome, first, note="  已完成路面修補  ")

    assert done["__typename"] == "WorkOrderUpdated", done
    order = done["workOrder"]
    assert (order["id"], order["status"]) == (first, outcome)
    assert order["finishedAt"] is not None
    assert order["incident"]["status"] == "DISPATCHED"
    seen = await history(client, incident["id"])
    assert (seen["status"], seen["version"]) == ("DISPATCHED", incident["version"])
    assert {o["id"]: o["status"] for o in seen["workOrders"]} == {first: outcome, second: "OPEN"}
    assert [e["kind"] for e in seen["events"]] == [
        "CREATED",
        "DISPATCH",
        "WORK_ORDER_CREATED",
        f"WORK_ORDER_{outcome}",
    ]
    assert seen["events"][-1] == {
        "kind": f"WORK_ORDER_{outcome}",
        "fromStatus": "DISPATCHED",
        "toStatus": "DISPATCHED",
        "actor": who,
        "note": "已完成路面修補",  # trimmed
        "data": {"work_order": key_of(first)},
    }
    finished_at = await owner.fetchval(
        "SELECT finished_at FROM work_order WHERE id = $1", key_of(first)
    )
    assert finished_at is not None


@pytest.mark.parametrize(("first", "then"), [("COMPLETED", "COMPLETED"), ("COMPLETED", "CANCELLED"), ("CANCELLED", "COMPLETED")])  # fmt: skip
async def test_a_finished_order_cannot_be_finished_again(
    client: GraphQLClient, owner: asyncpg.Connection, first: str, then: str
) -> None:
    incident, order = await dispatched(client)
    assert (await finish(client, first, order))["__typename"] == "WorkOrderUpdated"
    before = await rows(owner, incident["id"])

    again = await finish(client, then, order)

    assert again["__typename"] == "InvalidInput", again
    assert (again["code"], again["field"]) == ("INVALID_INPUT", "id")
    assert f"already {first}" in again["message"]
    assert await rows(owner, incident["id"]) == before
    status = await owner.fetchval("SELECT status FROM work_order WHERE id = $1", key_of(order))
    assert status == first


async def test_orders_finished_by_the_workflow_are_finished_for_good(
    client: GraphQLClient,
) -> None:
    """Closing cancels the open orders; they cannot be completed afterwards."""
    incident, order = await dispatched(client)
    closed = await act(client, "CLOSE", incident, reason="FALSE_POSITIVE")
    assert closed["incident"]["status"] == "CLOSED"
    late = await finish(client, "COMPLETED", order)
    assert late["__typename"] == "InvalidInput"
    assert "already CANCELLED" in late["message"]


async def test_another_bureaus_orders_are_not_found_or_forbidden(
    client: GraphQLClient, owner: asyncpg.Connection, as_: Callable[[str], GraphQLClient]
) -> None:
    incident, order = await dispatched(client)
    before = await rows(owner, incident["id"])
    epb = as_("epb-supervisor")

    # Environmental Protection cannot see the incident: its orders do not exist for it.
    for outcome in ("COMPLETED", "CANCELLED"):
        hidden = await finish(epb, outcome, order)
        assert (hidden["__typename"], hidden["entity"]) == ("NotFound", "work order")
    hidden_incident = await add_order(epb, incident["id"])
    assert (hidden_incident["__typename"], hidden_incident["entity"]) == ("NotFound", "incident")

    # Shared with it, the incident is visible — and still not Environmental Protection's to work.
    bureaus = await bureau_ids(client)
    shared = await client.data(
        """mutation($id: ID!, $v: Int!, $b: ID!) {
          shareIncident(input: {id: $id, expectedVersion: $v, bureauId: $b, reason: "協助清運"}) {
            __typename
          }
        }""",
        {"id": incident["id"], "v": incident["version"], "b": bureaus["ENVIRONMENTAL_PROTECTION"]},
    )
    assert shared["shareIncident"]["__typename"] == "IncidentUpdated"
    before = await rows(owner, incident["id"])
    for who in (epb, as_("jsc-operator")):  # the joint service centre sees all, works none
        for outcome in ("COMPLETED", "CANCELLED"):
            refused = await finish(who, outcome, order)
            assert (refused["__typename"], refused["code"]) == ("Forbidden", "FORBIDDEN")
        added = await add_order(who, incident["id"])
        assert added["__typename"] == "Forbidden"
    assert await rows(owner, incident["id"]) == before
    status = await owner.fetchval("SELECT status FROM work_order WHERE id = $1", key_of(order))
    assert status == "OPEN"


async def test_readers_cannot_touch_work_orders(
    client: GraphQLClient, owner: asyncpg.Connection, as_: Callable[[str], GraphQLClient]
) -> None:
    """A token without incidents:write gets a typed Forbidden, and nothing changes."""
    incident, order = await dispatched(client)
    before = await rows(owner, incident["id"])
    viewer = as_("pwb-viewer")
    for outcome in ("COMPLETED", "CANCELLED"):
        refused = await finish(viewer, outcome, order)
        assert (refused["__typename"], refused["code"]) == ("Forbidden", "FORBIDDEN")
        assert "ManageWorkOrders" in refused["message"]
    assert (await add_order(viewer, incident["id"]))["__typename"] == "Forbidden"
    assert await rows(owner, incident["id"]) == before
