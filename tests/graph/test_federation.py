"""The graph is a federation v2 subgraph from the start: ``_service`` and ``_entities`` answer."""

from __future__ import annotations

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
