"""Subscriptions over graphql-transport-ws, fed by LISTEN/NOTIFY across processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import websockets

from tests.graph.helpers import act, bureau_ids, create_incident, incident_in, key_of
from tests.support import GatewayProcess, GraphQLClient
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

SUBSCRIBE = """
subscription Changes($bureau: [ID!]) {
  incidentChanged(bureau: $bureau) {
    kind
    incident { id title status version responsibleBureau { code } events(limit: 1) { kind } }
  }
}
"""


class Subscription:
    def __init__(self, socket: websockets.ClientConnection) -> None:
        self.socket = socket

    async def next(self, wait: float = 10) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), wait))
            if message["type"] == "next":
                payload: dict[str, Any] = message["payload"]
                return payload
            if message["type"] in ("error", "complete"):
                raise AssertionError(message)


async def _subscribe(
    gateway: GatewayProcess, variables: dict[str, Any], token: str
) -> AsyncIterator[Subscription]:
    url = gateway.base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await socket.send(json.dumps(init))
        ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert ack["type"] == "connection_ack"
        await socket.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIBE, "variables": variables},
                }
            )
        )
        # Let the subscription register before changes are made.
        await asyncio.sleep(0.3)
        yield Subscription(socket)


@pytest.fixture
async def subscription(
    gateway: GatewayProcess, clean: None, tokens: TokenFactory
) -> AsyncIterator[Subscription]:
    async for subscription in _subscribe(gateway, {}, tokens.named("pwb-supervisor")):
        yield subscription


async def test_change_from_another_connection_is_delivered(
    client: GraphQLClient, subscription: Subscription, owner: asyncpg.Connection
) -> None:
    created = await create_incident(client, title="訂閱測試")
    first = await subscription.next()
    assert first["data"]["incidentChanged"]["kind"] == "CREATED"
    assert first["data"]["incidentChanged"]["incident"]["title"] == "訂閱測試"
    # A change made outside this gateway: another process's own database connection.
    incident_id = key_of(created["incident"]["id"])
    await owner.execute(
        "UPDATE incident SET title = '改過的標題', version = version + 1 WHERE id = $1", incident_id
    )
    second = await subscription.next()
    change = second["data"]["incidentChanged"]
    assert change["kind"] == "UPDATED"
    assert change["incident"]["title"] == "改過的標題"
    assert change["incident"]["version"] == 2


async def test_workflow_step_is_delivered_with_nested_fields(
    client: GraphQLClient, subscription: Subscription
) -> None:
    incident = await incident_in(client, "VERIFIED")
    await subscription.next()
    await act(client, "DISPATCH", incident)
    change = (await subscription.next())["data"]["incidentChanged"]
    assert change["incident"]["status"] == "DISPATCHED"
    assert change["incident"]["events"] == [{"kind": "DISPATCH"}]
    assert change["incident"]["responsibleBureau"] == {"code": "PUBLIC_WORKS"}


async def test_bureau_filter(
    client: GraphQLClient, gateway: GatewayProcess, clean: None, tokens: TokenFactory
) -> None:
    water = (await bureau_ids(client))["WATER_RESOURCES"]
    async for subscription in _subscribe(gateway, {"bureau": [water]}, tokens.named("city-viewer")):
        await create_incident(client, title="坑洞", category="POTHOLE")
        await create_incident(client, title="淹水", category="FLOODING")
        change = (await subscription.next())["data"]["incidentChanged"]
        assert change["incident"]["title"] == "淹水"
        assert change["incident"]["responsibleBureau"] == {"code": "WATER_RESOURCES"}
        with pytest.raises(TimeoutError):
            await subscription.next(wait=1)
