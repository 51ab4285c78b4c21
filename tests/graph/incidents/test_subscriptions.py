"""Subscriptions over graphql-transport-ws, fed by LISTEN/NOTIFY across processes.

Absence is proven by order, not by waiting: a subscriber's events come in commit order, so after
a change it may not see, a change it may see (the marker) is made, and the very next event must be
the marker's, whole. No sleep stands in for "nothing arrived".
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import websockets
from websockets.typing import Subprotocol

from tests.graph.helpers import (
    INCIDENT_FIELDS,
    act,
    bureau_ids,
    create_incident,
    incident_in,
    key_of,
)
from tests.support import REPOSITORY, GatewayProcess, GraphQLClient, socket_message, wait_for_tool
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
SHARE = (
    INCIDENT_FIELDS
    + """
mutation Share($input: ShareIncidentInput!) {
  shareIncident(input: $input) {
    __typename
    ... on IncidentUpdated { incident { ...IncidentFields } }
    ... on Error { code message }
  }
}
"""
)

# Makes a change the subscriber may see and returns the changed incident's ID.
Poke = Callable[[], Awaitable[str]]


def event_for(kind: str, incident: dict[str, Any], last_event: str) -> dict[str, Any]:
    """The whole event a subscriber must receive for ``incident`` as a mutation returned it, in
    SUBSCRIBE's selection."""
    return {
        "kind": kind,
        "incident": {
            "id": incident["id"],
            "title": incident["title"],
            "status": incident["status"],
            "version": incident["version"],
            "responsibleBureau": {"code": incident["responsibleBureau"]["code"]},
            "events": [{"kind": last_event}],
        },
    }


class Subscription:
    def __init__(self, socket: websockets.ClientConnection) -> None:
        self.socket = socket

    async def next(self, wait: float = 10) -> dict[str, Any]:
        while True:
            message = await socket_message(self.socket, wait)
            if message["type"] == "next":
                payload: dict[str, Any] = message["payload"]
                return payload
            if message["type"] in ("error", "complete"):
                raise AssertionError(message)

    async def change(self, wait: float = 10) -> dict[str, Any]:
        """The next event, which must carry data and no errors."""
        payload = await self.next(wait)
        assert "errors" not in payload, payload["errors"]
        change: dict[str, Any] = payload["data"]["incidentChanged"]
        return change

    async def until_live(self, poke: Poke, wait: float = 0.5, attempts: int = 20) -> None:
        """Poke until a poke's event arrives. graphql-transport-ws does not acknowledge a
        subscription, and a change committed before the gateway holds it is never delivered, so
        without this a missing event could mean "not yet listening" rather than "withheld".
        Events come in commit order: once the last poke's arrives, earlier ones are drained. A
        slow delivery (beyond ``wait``) only costs another poke."""
        for _ in range(attempts):
            poked = await poke()
            try:
                while (await self.change(wait))["incident"]["id"] != poked:
                    pass
            except TimeoutError:
                continue
            return
        raise AssertionError(f"the subscription delivered none of {attempts} pokes")


async def _subscribe(
    gateway: GatewayProcess, variables: dict[str, Any], token: str, poke: Poke
) -> AsyncIterator[Subscription]:
    url = gateway.base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        url, subprotocols=[Subprotocol("graphql-transport-ws")]
    ) as socket:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await socket.send(json.dumps(init))
        ack = await socket_message(socket, 10)
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
        subscription = Subscription(socket)
        await subscription.until_live(poke)
        yield subscription


def creating(client: GraphQLClient, **fields: Any) -> Poke:
    """A poke that reports a new incident (each poke its own, so its event is unmistakable)."""

    async def poke() -> str:
        created = await create_incident(client, title="就緒探針", **fields)
        incident_id: str = created["incident"]["id"]
        return incident_id

    return poke


@pytest.fixture
async def subscription(
    gateway: GatewayProcess, client: GraphQLClient, tokens: TokenFactory
) -> AsyncIterator[Subscription]:
    token = tokens.named("pwb-supervisor")
    async for subscription in _subscribe(gateway, {}, token, creating(client)):
        yield subscription


async def test_change_from_another_connection_is_delivered(
    client: GraphQLClient, subscription: Subscription, owner: asyncpg.Connection
) -> None:
    created = (await create_incident(client, title="訂閱測試"))["incident"]
    assert await subscription.change() == event_for("CREATED", created, "CREATED")
    # A change made outside this gateway: another process's own database connection.
    incident_id = key_of(created["id"])
    await owner.execute(
        "UPDATE incident SET title = '改過的標題', version = version + 1 WHERE id = $1", incident_id
    )
    changed = {**created, "title": "改過的標題", "version": 2}
    assert await subscription.change() == event_for("UPDATED", changed, "CREATED")


async def test_workflow_step_is_delivered_with_nested_fields(
    client: GraphQLClient, subscription: Subscription
) -> None:
    incident = await incident_in(client, "VERIFIED")
    await subscription.next()
    dispatched = (await act(client, "DISPATCH", incident))["incident"]
    assert dispatched["status"] == "DISPATCHED"
    assert await subscription.change() == event_for("UPDATED", dispatched, "DISPATCH")


async def test_bureau_filter(
    client: GraphQLClient, gateway: GatewayProcess, tokens: TokenFactory
) -> None:
    water = (await bureau_ids(client))["WATER_RESOURCES"]
    token = tokens.named("city-viewer")
    flooding = creating(client, category="FLOODING")
    async for subscription in _subscribe(gateway, {"bureau": [water]}, token, flooding):
        # The city-wide viewer may see the pothole; the filter passes it over.
        await create_incident(client, title="坑洞", category="POTHOLE")
        marker = (await create_incident(client, title="淹水", category="FLOODING"))["incident"]
        assert marker["responsibleBureau"]["code"] == "WATER_RESOURCES"
        assert await subscription.change() == event_for("CREATED", marker, "CREATED")


async def test_a_change_the_subscriber_may_not_see_is_not_delivered(
    client: GraphQLClient, gateway: GatewayProcess, tokens: TokenFactory
) -> None:
    """Police subscribes to everything; Public Works' pothole is withheld until it is shared."""
    police = (await bureau_ids(client))["POLICE"]
    parking = creating(client, category="ILLEGAL_PARKING")  # Police's: it may see these
    async for subscription in _subscribe(gateway, {}, tokens.named("police-viewer"), parking):
        # Two changes Police may not see: the pothole's creation and its dispatch.
        hidden = await incident_in(client, "DISPATCHED", title="看不到")
        assert hidden["responsibleBureau"]["code"] == "PUBLIC_WORKS"
        # The marker, a change Police may see: the next event is the marker's, so both hidden
        # changes were passed over (and the subscriber is past them before the share below).
        created = await create_incident(client, title="違規停車", category="ILLEGAL_PARKING")
        marker = created["incident"]
        assert await subscription.change() == event_for("CREATED", marker, "CREATED")
        # Shared with Police, the pothole is Police's to see: its next change is delivered.
        shared = await client.data(
            SHARE,
            {
                "input": {
                    "id": hidden["id"],
                    "expectedVersion": hidden["version"],
                    "bureauId": police,
                    "reason": "需警方協助交通管制",
                }
            },
        )
        now_visible = shared["shareIncident"]["incident"]
        assert (now_visible["id"], now_visible["version"]) == (hidden["id"], hidden["version"] + 1)
        assert await subscription.change() == event_for("UPDATED", now_visible, "SHARED")


CLIENTS = REPOSITORY / "tests" / "clients"


async def test_a_browsers_graphql_ws_client_receives_the_events(
    client: GraphQLClient, gateway: GatewayProcess, tokens: TokenFactory
) -> None:
    """graphql-ws (what Apollo Client, urql and GraphiQL subscribe with) on the WHATWG WebSocket,
    which, as in a browser, cannot read a binary frame."""
    wait_for_tool("clients")
    node = shutil.which("node")
    assert node and (CLIENTS / "node_modules" / "graphql-ws").is_dir(), (
        "the test clients are missing: run `npm ci --prefix tests/clients`"
    )
    url = gateway.base_url.replace("http://", "ws://") + "/graphql"
    query = "subscription { incidentChanged { kind incident { id title } } }"
    process = await asyncio.create_subprocess_exec(
        node, "--experimental-websocket", "--no-warnings", str(CLIENTS / "subscribe.mjs"),
        url, tokens.named("pwb-supervisor"), query, "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        first = json.loads(await asyncio.wait_for(process.stdout.readline(), 30) or b"{}")
        assert first == {"connected": True}, first
        # The subscription is not acknowledged: incidents are reported until one's event comes.
        titles = []
        for attempt in range(20):
            titles.append(f"瀏覽器訂閱 {attempt}")
            await create_incident(client, title=titles[-1])
            try:
                line = await asyncio.wait_for(process.stdout.readline(), 0.5)
            except TimeoutError:
                continue
            result = json.loads(line)
            assert "error" not in result and "errors" not in result, result
            change = result["data"]["incidentChanged"]
            assert change["kind"] == "CREATED" and change["incident"]["title"] in titles, result
            break
        else:
            raise AssertionError("the browser's client received none of 20 events")
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
