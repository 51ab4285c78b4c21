"""GraphQL documents and steps the graph tests share."""

from __future__ import annotations

import base64
from typing import Any

from tests.support import GraphQLClient

INCIDENT_FIELDS = """
fragment IncidentFields on Incident {
  id caseNumber title status statusClass closingReason version source
  reportedAt dueAt closedAt
  responsibleBureau { id code }
  location { latitude longitude twd97 { x y } }
  allowedActions
}
"""

ERROR_FIELDS = """
... on Error { __typename message code }
... on InvalidInput { field }
... on TransitionRejected { status action allowedActions }
... on VersionConflict { expectedVersion currentVersion }
"""

CREATE_ERROR_FIELDS = """
... on Error { __typename message code }
... on InvalidInput { field }
"""

CREATE_INCIDENT = (
    INCIDENT_FIELDS
    + """
mutation Create($input: CreateIncidentInput!, $key: String) {
  createIncident(input: $input, idempotencyKey: $key) {
    __typename
    ... on IncidentCreated { replayed incident { ...IncidentFields } }
    ERRORS
  }
}
""".replace("ERRORS", CREATE_ERROR_FIELDS)
)


def global_id(type_name: str, key: int) -> str:
    return base64.b64encode(f"{type_name}:{key}".encode()).decode()


def kaohsiung(latitude: float = 22.6273, longitude: float = 120.3014) -> dict[str, Any]:
    return {"wgs84": {"latitude": latitude, "longitude": longitude}}


async def create_incident(
    client: GraphQLClient,
    *,
    key: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": "道路坑洞",
        "category": "POTHOLE",
        "source": "STAFF",
        "location": kaohsiung(),
    }
    values.update(overrides)
    data = await client.data(CREATE_INCIDENT, {"input": values, "key": key})
    result: dict[str, Any] = data["createIncident"]
    return result


MUTATIONS = {
    "VERIFY": ("verifyIncident", "IncidentStepInput"),
    "START_WORK": ("startWork", "IncidentStepInput"),
    "RESOLVE": ("resolveIncident", "IncidentStepInput"),
    "REOPEN": ("reopenIncident", "IncidentStepInput"),
    "CLOSE": ("closeIncident", "CloseIncidentInput"),
    "DISPATCH": ("dispatchIncident", "DispatchIncidentInput"),
    "TRANSFER": ("transferIncident", "TransferIncidentInput"),
    "MARK_DUPLICATE": ("markDuplicate", "MarkDuplicateInput"),
}


SUCCESS = {
    "DISPATCH": "... on IncidentDispatched { incident { ...IncidentFields } workOrder { id status } replayed }",
    "TRANSFER": "... on IncidentTransferred { incident { ...IncidentFields } transfer { id reason } }",
}


def action_document(action: str) -> str:
    field, input_type = MUTATIONS[action]
    success = SUCCESS.get(action, "... on IncidentUpdated { incident { ...IncidentFields } }")
    return (
        INCIDENT_FIELDS
        + f"""
mutation Act($input: {input_type}!) {{
  result: {field}(input: $input) {{
    __typename
    {success}
    {ERROR_FIELDS}
  }}
}}
"""
    )


async def act(
    client: GraphQLClient, action: str, incident: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """Apply a workflow action to ``incident`` (as last read) and return the result object."""
    payload: dict[str, Any] = {"id": incident["id"], "expectedVersion": incident["version"]}
    if action == "CLOSE":
        payload["reason"] = extra.pop("reason", "FALSE_POSITIVE")
    elif action == "DISPATCH":
        payload["workOrder"] = extra.pop("workOrder", {"crew": "養護一隊"})
    elif action == "TRANSFER":
        payload["toBureauId"] = extra.pop("toBureauId")
        payload["reason"] = extra.pop("reason", "非本局權責")
    elif action == "MARK_DUPLICATE":
        payload["duplicateOf"] = extra.pop("duplicateOf")
    payload.update(extra)
    data = await client.data(action_document(action), {"input": payload})
    result: dict[str, Any] = data["result"]
    return result


async def bureau_ids(client: GraphQLClient) -> dict[str, str]:
    data = await client.data("{ bureaus { id code } }")
    return {b["code"]: b["id"] for b in data["bureaus"]}


# How to bring a new STAFF report (VERIFIED) or VLM finding (DETECTED) to each status.
PATHS: dict[str, tuple[str, list[str]]] = {
    "DETECTED": ("VLM", []),
    "VERIFIED": ("STAFF", []),
    "DISPATCHED": ("STAFF", ["DISPATCH"]),
    "IN_PROGRESS": ("STAFF", ["DISPATCH", "START_WORK"]),
    "RESOLVED": ("STAFF", ["DISPATCH", "START_WORK", "RESOLVE"]),
    "CLOSED": ("STAFF", ["CLOSE"]),
}


async def incident_in(client: GraphQLClient, status: str, **overrides: Any) -> dict[str, Any]:
    source, steps = PATHS[status]
    created = await create_incident(client, source=source, **overrides)
    incident: dict[str, Any] = created["incident"]
    for step in steps:
        result = await act(client, step, incident)
        assert "incident" in result, result
        incident = result["incident"]
    assert incident["status"] == status
    return incident


def key_of(value: str) -> int:
    """The database key inside a global ID (tests look at rows directly)."""
    return int(base64.b64decode(value).decode().split(":", 1)[1])
