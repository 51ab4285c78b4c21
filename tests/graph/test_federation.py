"""The graph is a federation v2 subgraph from the start: ``_service`` and ``_entities`` answer."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.graph.helpers import bureau_ids, global_id, incident_in
from tests.support import GraphQLClient

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
    bureaus = list((await bureau_ids(client)).values())
    representations: list[dict[str, Any]] = [
        {"__typename": "Incident", "id": incident["id"]} for incident in incidents
    ]
    representations += [{"__typename": "Bureau", "id": bureau} for bureau in bureaus]
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
    assert {entity["code"] for entity in found[3 : 3 + len(bureaus)]} == {
        "PUBLIC_WORKS",
        *{e["code"] for e in found[3 : 3 + len(bureaus)]},
    }
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
