"""The graph is a federation v2 subgraph from the start: ``_service`` and ``_entities`` answer."""

from __future__ import annotations

import os
import re
from typing import Any

import asyncpg
import httpx
import pytest
from strawberry.relay import GlobalID

from api.auth.principal import Principal, PrincipalKind
from tests.graph.helpers import bureau_ids, global_id, incident_in, key_of
from tests.support import DatabaseUnderTest, GraphQLClient
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

ENTITIES = """
query($representations: [_Any!]!) {
  _entities(representations: $representations) {
    __typename
    ... on Incident { id title responsibleBureau { code } }
    ... on Bureau { id code }
  }
}
"""


async def test_service_sdl_declares_entities(client: GraphQLClient) -> None:
    sdl = (await client.data("{ _service { sdl } }"))["_service"]["sdl"]
    assert '@link(url: "https://specs.apollo.dev/federation/v2' in sdl
    for entity in ("Incident", "Asset", "Bureau", "WorkOrder"):
        assert f'type {entity} implements Node @key(fields: "id")' in sdl


async def test_service_sdl_carries_access_directives_for_routers(client: GraphQLClient) -> None:
    sdl = (await client.data("{ _service { sdl } }"))["_service"]["sdl"]
    assert 'type Incident implements Node @key(fields: "id") @authenticated' in sdl
    assert '@requiresScopes(scopes: [["incidents:read"]])' in sdl
    assert 'reporter: Reporter @policy(policies: [["ViewPersonalData"]])' in sdl
    assert "createIncident(" in sdl and '@requiresScopes(scopes: [["incidents:write"]])' in sdl


async def test_entities_resolve_through_the_loaders(client: GraphQLClient) -> None:
    incident = await incident_in(client, "VERIFIED", title="聯邦")
    bureau = (await bureau_ids(client))["FIRE"]
    data = await client.data(
        ENTITIES,
        {
            "representations": [
                {"__typename": "Incident", "id": incident["id"]},
                {"__typename": "Bureau", "id": bureau},
                {"__typename": "Incident", "id": global_id("Incident", 999999)},
            ]
        },
    )
    assert data["_entities"] == [
        {
            "__typename": "Incident",
            "id": incident["id"],
            "title": "聯邦",
            "responsibleBureau": {"code": "PUBLIC_WORKS"},
        },
        {"__typename": "Bureau", "id": bureau, "code": "FIRE"},
        None,
    ]


async def test_node_query_by_global_id(client: GraphQLClient) -> None:
    incident = await incident_in(client, "DETECTED")
    data = await client.data(
        "query($id: ID!) { node(id: $id) { __typename ... on Incident { status } } }",
        {"id": incident["id"]},
    )
    assert data["node"] == {"__typename": "Incident", "status": "DETECTED"}


def _statements(metrics: str, operation: str) -> float:
    pattern = r'lighthouse_db_statements_per_operation_sum\{operation="%s"\} ([0-9.e+]+)'
    found = re.findall(pattern % operation, metrics)
    return float(found[0]) if found else 0.0


MANY = """
query Many($representations: [_Any!]!) {
  _entities(representations: $representations) {
    __typename
    ... on Incident { id title responsibleBureau { code } category { code } asset { code } }
    ... on Bureau { code nameEn }
    ... on Asset { code bureau { code } }
    ... on WorkOrder { crew }
    ... on IncidentCategory { code responsibleBureau { code } }
  }
}
"""


async def test_500_references_cost_a_bounded_number_of_statements(
    client: GraphQLClient, http: httpx.AsyncClient
) -> None:
    incidents = [await incident_in(client, "VERIFIED", title=f"參照 {i}") for i in range(3)]
    bureaus = await bureau_ids(client)  # by code
    representations: list[dict[str, Any]] = [
        {"__typename": "Incident", "id": incident["id"]} for incident in incidents
    ]
    representations += [{"__typename": "Bureau", "id": bureau} for bureau in bureaus.values()]
    representations += [{"__typename": "IncidentCategory", "code": "POTHOLE"}]
    kinds = ["Incident", "Asset", "WorkOrder"]
    while len(representations) < 500:
        kind = kinds[len(representations) % 3]
        representations.append(
            {"__typename": kind, "id": global_id(kind, 900000 + len(representations))}
        )

    before = _statements((await http.get("/metrics")).text, "Many")
    data = await client.data(MANY, {"representations": representations})
    after = _statements((await http.get("/metrics")).text, "Many")

    found = data["_entities"]
    assert len(found) == 500
    assert [entity["title"] for entity in found[:3]] == ["參照 0", "參照 1", "參照 2"]
    # Each bureau's reference answered by that bureau, in the order asked.
    assert [entity["code"] for entity in found[3 : 3 + len(bureaus)]] == list(bureaus)
    assert found[3 + len(bureaus)] == {
        "__typename": "IncidentCategory", "code": "POTHOLE",
        "responsibleBureau": {"code": "PUBLIC_WORKS"},
    }  # fmt: skip
    assert all(entity is None for entity in found[4 + len(bureaus) :])
    # The identity; one read per entity type (incidents, bureaus, categories, assets, work
    # orders); one per nested field of the incidents found (categories and assets are
    # loaded already, bureaus too); the audit record. Not one per reference.
    assert after - before <= 1 + 5 + 3 + 1, after - before


@pytest.mark.parametrize(
    "representations",
    [
        [{"__typename": "Incident", "id": global_id("Incident", 1)}] * 1001,
        [{"__typename": "NoSuchType", "id": "x"}],
        [{"__typename": "Viewer", "subject": "x"}],  # not an entity
        [{"__typename": "Incident"}],  # no key
        [{"__typename": "Incident", "id": {"nested": 1}}],
        ["Incident:1"],
    ],
    ids=["too-many", "unknown-type", "not-an-entity", "no-key", "key-not-scalar", "not-an-object"],
)
async def test_a_bad_reference_is_refused_whole_before_anything_is_read(
    client: GraphQLClient, http: httpx.AsyncClient, representations: list[Any]
) -> None:
    before = _statements((await http.get("/metrics")).text, "Bad")
    body = await client.execute(
        "query Bad($r: [_Any!]!) { _entities(representations: $r) { __typename } }",
        {"r": representations},
    )
    after = _statements((await http.get("/metrics")).text, "Bad")
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INVALID_INPUT"]
    assert "representations" in body["errors"][0]["message"]
    # The identity and the audit record of the refusal; no read.
    assert after - before <= 2, after - before


async def public_works_frame(owner: asyncpg.Connection) -> bytes:
    """A frame of a new Public Works camera, recorded directly; its SHA-256."""
    frame = os.urandom(32)
    await owner.execute(
        "WITH camera AS (INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude,"
        " created_by) SELECT $2, 'CAMERA', 'camera', id, 22.6, 120.3, 'tests'"
        " FROM bureau WHERE code = 'PUBLIC_WORKS' RETURNING id, bureau_id)"
        " INSERT INTO frame (sha256, camera_id, bureau_id, media_type, size_bytes, width, height,"
        " captured_at, uploaded_by) SELECT $1, id, bureau_id, 'image/jpeg', 10, 4, 3, now(),"
        " 'tests' FROM camera",
        frame,
        f"CAM-FED-{frame.hex()[:8]}",
    )
    return frame


async def test_a_frame_reference_resolves_by_the_id_the_subgraph_serves(
    client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    frame = await public_works_frame(owner)
    frame_id = str(GlobalID("Frame", frame.hex()))
    data = await client.data(
        "query Frames($representations: [_Any!]!) { _entities(representations: $representations)"
        " { __typename ... on Frame { id sha256 } } }",
        {"representations": [{"__typename": "Frame", "id": frame_id}]},
    )
    assert data["_entities"] == [{"__typename": "Frame", "id": frame_id, "sha256": frame.hex()}]


PROBE = """
query Probe($representations: [_Any!]!) {
  _entities(representations: $representations) {
    __typename
    ... on Incident { id title }
    ... on WorkOrder { id crew }
    ... on Frame { id sha256 }
  }
}
"""
# Callers the policies refuse incidents and frames to (incidents.list): an auditor without
# incidents:read, and a licensee whatever its token says. The licensee's token names Public
# Works, whose incidents and frames row-level security would show it (it looks at the bureau, not
# at the kind of caller), so only the policies' decision stands between it and the data.
REFUSED_CALLERS = {
    "auditor": {"subject": "auditor", "kind": "auditor", "scopes": ["audit:read"]},
    "licensee-naming-a-bureau": {
        "subject": "acme-probe", "kind": "licensee", "bureau": "PUBLIC_WORKS",
        "scopes": ["incidents:read", "assets:read", "pii:read"],
    },
}  # fmt: skip


async def _rls_shows(
    database: DatabaseUnderTest, principal: Principal, incident: int, work_order: int, frame: bytes
) -> list[int]:
    """How many of the incident, the work order and the frame row-level security alone shows
    ``principal`` (the application role, with the identity set as the gateway sets it)."""
    app = await asyncpg.connect(database.app_url)
    try:
        async with app.transaction():
            settings = principal.database_settings()
            await app.execute(
                "SELECT set_config(n, v, true) FROM unnest($1::text[], $2::text[]) AS s(n, v)",
                list(settings), list(settings.values()),
            )  # fmt: skip
            return [
                await app.fetchval(f"SELECT count(*) FROM lighthouse.{table} WHERE {key} = $1", value)
                for table, key, value in (
                    ("incident", "id", incident), ("work_order", "id", work_order),
                    ("frame", "sha256", frame),
                )
            ]  # fmt: skip
    finally:
        await app.close()


@pytest.mark.parametrize("caller", sorted(REFUSED_CALLERS))
async def test_entities_refused_by_the_policies_answer_the_refusal_and_are_audited(
    client: GraphQLClient,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    owner: asyncpg.Connection,
    database: DatabaseUnderTest,
    caller: str,
) -> None:
    incident = await incident_in(client, "DISPATCHED", title="不該看見")
    incident_id = key_of(incident["id"])
    work_order = await owner.fetchval(
        "SELECT id FROM work_order WHERE incident_id = $1", incident_id
    )
    frame = await public_works_frame(owner)
    who: dict[str, Any] = REFUSED_CALLERS[caller]
    bureau = who.get("bureau")
    bureau_id = await owner.fetchval("SELECT id FROM bureau WHERE code = $1", bureau)
    principal = Principal(
        subject=who["subject"], kind=PrincipalKind(who["kind"]), bureau_id=bureau_id,
        bureau_code=bureau, scopes=frozenset(who["scopes"]),
    )  # fmt: skip
    expected_rls = [1, 1, 1] if bureau else [0, 0, 0]
    assert await _rls_shows(database, principal, incident_id, work_order, frame) == expected_rls

    response = await http.post(
        "/graphql",
        json={
            "query": PROBE,
            "variables": {
                "representations": [
                    {"__typename": "Incident", "id": incident["id"]},
                    {"__typename": "WorkOrder", "id": global_id("WorkOrder", work_order)},
                    {"__typename": "Frame", "id": str(GlobalID("Frame", frame.hex()))},
                ]
            },
        },
        headers={"authorization": f"Bearer {tokens.custom(**who)}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] == {"_entities": [None, None, None]}, body
    refusals = sorted((e["path"][1], e["extensions"]["code"]) for e in body["errors"])
    assert refusals == [(0, "FORBIDDEN"), (1, "FORBIDDEN"), (2, "FORBIDDEN")], body["errors"]
    # The refused access is on the record: who asked, refused by the policies, nothing shown.
    record = await owner.fetchrow(
        "SELECT subject, operation, decision, resource_ids FROM audit_record WHERE request_id = $1",
        response.headers["x-request-id"],
    )
    assert record is not None
    assert (record["subject"], record["operation"], record["decision"]) == (
        who["subject"], "Probe", "DENY",
    )  # fmt: skip
    assert record["resource_ids"] == []
