"""A bureau reaches another bureau's incidents by no path: id, list, nested field, subscription,
federation entities, or mutation. Sharing and transfers open exactly what the rules say."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from tests.graph.helpers import act, bureau_ids, create_incident, incident_in
from tests.support import GatewayProcess, GraphQLClient, socket_message
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

ONE = "query($id: ID!) { incident(id: $id) { id title } node(id: $id) { id } }"
LIST = "{ incidents(first: 50) { totalCount edges { node { id } } } }"
ENTITIES = 'query($id: ID!) { _entities(representations: [{__typename: "Incident", id: $id}]) { ... on Incident { id } } }'
SHARE = """
mutation($id: ID!, $v: Int!, $b: ID!) {
  shareIncident(input: {id: $id, expectedVersion: $v, bureauId: $b, reason: "需警方協助交通管制"}) {
    __typename ... on IncidentUpdated { incident { id version } } ... on Error { code message }
  }
}
"""


async def _ids(client: GraphQLClient) -> list[str]:
    return [e["node"]["id"] for e in (await client.data(LIST))["incidents"]["edges"]]


async def test_no_path_leads_to_another_bureaus_incident(
    client: GraphQLClient, as_: Callable[[str], GraphQLClient]
) -> None:
    pothole = (await create_incident(client, title="公務坑洞"))["incident"]
    dispatched = await act(client, "DISPATCH", pothole)
    work_order = dispatched["workOrder"]["id"]
    police = as_("police-viewer")
    assert await _ids(police) == []
    assert (await police.data(ONE, {"id": pothole["id"]})) == {"incident": None, "node": None}
    assert (await police.data(ENTITIES, {"id": pothole["id"]}))["_entities"] == [None]
    order = await police.data("query($id: ID!) { workOrder(id: $id) { id } }", {"id": work_order})
    assert order == {"workOrder": None}
    # A mutation on an invisible incident is "not found", revealing nothing about it.
    epb = as_("epb-supervisor")
    refused = await act(epb, "CLOSE", dispatched["incident"], reason="FALSE_POSITIVE")
    assert refused["__typename"] == "NotFound"
    # The owner still sees it, the joint service centre and city-wide viewers too.
    for who in (client, as_("jsc-operator"), as_("city-viewer")):
        assert pothole["id"] in await _ids(who)


async def test_nested_paths_hide_what_is_not_visible(
    client: GraphQLClient, as_: Callable[[str], GraphQLClient]
) -> None:
    epb = as_("epb-supervisor")
    jsc = as_("jsc-operator")
    dumping = (await create_incident(epb, title="棄置家具", category="ILLEGAL_DUMPING"))["incident"]
    pothole = (await create_incident(client, title="坑洞"))["incident"]
    # The joint service centre links the dumping report to the pothole report as a duplicate.
    marked = await act(jsc, "MARK_DUPLICATE", dumping, duplicateOf=pothole["id"])
    assert marked["incident"]["closingReason"] == "DUPLICATE"
    seen_by_epb = await epb.data(
        "query($id: ID!) { incident(id: $id) { status duplicateOf { id } } }", {"id": dumping["id"]}
    )
    assert seen_by_epb["incident"] == {"status": "CLOSED", "duplicateOf": None}
    seen_by_pwb = await client.data(
        "query($id: ID!) { incident(id: $id) { duplicates { id } } }", {"id": pothole["id"]}
    )
    assert seen_by_pwb["incident"]["duplicates"] == []
    seen_by_jsc = await jsc.data(
        "query($id: ID!) { incident(id: $id) { duplicates { id } } }", {"id": pothole["id"]}
    )
    assert seen_by_jsc["incident"]["duplicates"] == [{"id": dumping["id"]}]


async def test_sharing_opens_one_incident_to_one_bureau(
    client: GraphQLClient, as_: Callable[[str], GraphQLClient]
) -> None:
    bureaus = await bureau_ids(client)
    incident = await incident_in(
        client,
        "VERIFIED",
        title="路樹倒塌需交管",
        reporter={"name": "王小明", "phone": "0912345678"},
    )
    other = await incident_in(client, "VERIFIED", title="不分享")
    police = as_("police-viewer")
    refused = await as_("pwb-dispatcher").data(
        SHARE, {"id": incident["id"], "v": incident["version"], "b": bureaus["POLICE"]}
    )
    assert refused["shareIncident"]["__typename"] == "Forbidden"
    shared = await client.data(
        SHARE, {"id": incident["id"], "v": incident["version"], "b": bureaus["POLICE"]}
    )
    assert shared["shareIncident"]["__typename"] == "IncidentUpdated"
    assert await _ids(police) == [incident["id"]]
    assert other["id"] not in await _ids(police)
    # The police see the case but not the reporter: null, with a typed error, rest intact.
    body = await police.execute(
        "query($id: ID!) { incident(id: $id) { title events(limit: 1) { kind } reporter { name } } }",
        {"id": incident["id"]},
    )
    assert body["data"]["incident"] == {
        "title": "路樹倒塌需交管",
        "events": [{"kind": "SHARED"}],
        "reporter": None,
    }
    assert body["errors"][0]["extensions"]["code"] == "PERSONAL_DATA_MASKED"
    assert body["errors"][0]["path"] == ["incident", "reporter"]
    # Seeing is not acting.
    verify = await act(
        police,
        "DISPATCH",
        shared["shareIncident"]["incident"] | {"version": incident["version"] + 1},
    )
    assert verify["__typename"] == "Forbidden"


async def test_a_transfer_moves_responsibility_and_keeps_history_visible(
    client: GraphQLClient, as_: Callable[[str], GraphQLClient]
) -> None:
    bureaus = await bureau_ids(client)
    incident = await incident_in(client, "VERIFIED")
    moved = await act(client, "TRANSFER", incident, toBureauId=bureaus["ENVIRONMENTAL_PROTECTION"])
    assert moved["incident"]["responsibleBureau"]["code"] == "ENVIRONMENTAL_PROTECTION"
    epb = as_("epb-supervisor")
    assert incident["id"] in await _ids(epb)
    assert incident["id"] in await _ids(client)  # Public Works held it, and still sees it
    again = await act(client, "DISPATCH", moved["incident"])
    assert again["__typename"] == "Forbidden"  # but no longer acts on it
    dispatched = await act(epb, "DISPATCH", moved["incident"])
    assert dispatched["__typename"] == "IncidentDispatched"


async def test_personal_data_rules(
    client: GraphQLClient, as_: Callable[[str], GraphQLClient], tokens: TokenFactory, http: Any
) -> None:
    created = await create_incident(
        client, title="民眾通報", source="CITIZEN_1999",
        reporter={"name": "陳美玲", "phone": "0921889838", "personalNote": "住在對面"},
    )  # fmt: skip
    incident_id = created["incident"]["id"]
    query = "query($id: ID!) { incident(id: $id) { title reporter { name phone personalNote } } }"
    full = await client.data(query, {"id": incident_id})
    assert full["incident"]["reporter"] == {
        "name": "陳美玲",
        "phone": "0921889838",
        "personalNote": "住在對面",
    }
    masked = await as_("pwb-dispatcher").execute(query, {"id": incident_id})
    assert masked["data"]["incident"] == {"title": "民眾通報", "reporter": None}
    assert masked["errors"][0]["extensions"]["code"] == "PERSONAL_DATA_MASKED"
    investigator = GraphQLClient(
        http,
        tokens.custom(
            subject="investigator",
            kind="auditor",
            roles=["auditor"],
            scopes=["audit:read", "incidents:read", "pii:read"],
        ),
    )
    assert (await investigator.data(query, {"id": incident_id}))["incident"]["reporter"][
        "name"
    ] == "陳美玲"
    licensee = GraphQLClient(
        http,
        tokens.custom(subject="acme", kind="licensee", scopes=["incidents:read", "pii:read"]),
    )
    refused = await licensee.execute(query, {"id": incident_id})
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_subscriptions_deliver_only_visible_changes(
    client: GraphQLClient, gateway: GatewayProcess, tokens: TokenFactory
) -> None:
    bureaus = await bureau_ids(client)
    url = gateway.base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:
        token = tokens.named("police-viewer")
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert (await socket_message(socket))["type"] == "connection_ack"
        query = "subscription { incidentChanged { kind incident { title } } }"
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        await asyncio.sleep(0.3)
        hidden = await incident_in(client, "VERIFIED", title="看不到")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(socket.recv(), 1.0)
        await client.data(
            SHARE, {"id": hidden["id"], "v": hidden["version"], "b": bureaus["POLICE"]}
        )
        message = await socket_message(socket, 10)
        assert message["payload"]["data"]["incidentChanged"]["incident"]["title"] == "看不到"


async def test_a_bad_token_cannot_open_a_subscription(gateway: GatewayProcess) -> None:
    url = gateway.base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer nope"}})
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_anonymous_callers_see_reference_data_only(http: Any, tokens: TokenFactory) -> None:
    anonymous = GraphQLClient(http)
    assert len((await anonymous.data("{ bureaus { code } }"))["bureaus"]) == 10
    assert (await anonymous.data("{ categories { code } me { kind } }"))["me"]["kind"]
    # Anything that needs a token is refused before it runs, as clients' auth links expect:
    # 401, UNAUTHENTICATED, and a challenge without an error code (none was presented).
    for document in (
        LIST,
        "{ bureaus { code } auditRecords(first: 1) { edges { cursor } } }",
        "mutation New($input: CreateAssetInput!) { createAsset(input: $input) { __typename } }",
    ):
        response = await http.post("/graphql", json={"query": document})
        assert response.status_code == 401, (document, response.text)
        assert response.headers["www-authenticate"] == 'Bearer realm="lighthouse"'
        body = response.json()
        assert body["data"] is None
        assert {e["extensions"]["code"] for e in body["errors"]} == {"UNAUTHENTICATED"}
    # A token that does not grant it is still a 200 with FORBIDDEN: signing in would not help.
    token = tokens.custom(subject="licensee-1", kind="licensee", scopes=["incidents:read"])
    licensee = await GraphQLClient(http, token).execute(LIST)
    assert licensee["errors"][0]["extensions"]["code"] == "FORBIDDEN"
