"""What an anonymous caller can make the gateway allocate, hold open or write: each is bounded,
and each bad request gets a coded error — before anything is parsed or read in full."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from api.graph.core.documents import DocumentCache
from api.http.sockets import SocketBudget
from tests.graph.helpers import create_incident
from tests.support import (
    GatewayProcess,
    GraphQLClient,
    client_from,
    socket_message,
    stranger_address,
)
from tests.tokens import TokenFactory

LIMIT = 64 * 1024  # LIGHTHOUSE_MAX_DOCUMENT_BYTES's default
BODY_LIMIT = 1024 * 1024  # LIGHTHOUSE_MAX_BODY_BYTES's default


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["errors"][0]["extensions"]["code"]
    return code


async def test_a_document_padded_past_the_limit_is_refused_before_parsing(
    http: httpx.AsyncClient,
) -> None:
    # The token limit does not count comments: size is counted on the text.
    padded = "{ bureaus { code } }\n#" + "x" * LIMIT
    response = await http.post("/graphql", json={"query": padded})
    assert response.status_code == 413
    assert error_code(response) == "DOCUMENT_TOO_LARGE"
    assert (
        response.json()["errors"][0]["extensions"]["requestId"] == response.headers["x-request-id"]
    )
    # Just under the limit it is an ordinary document.
    fits = "{ bureaus { code } }\n#" + "x" * (LIMIT - 100)
    assert (await http.post("/graphql", json={"query": fits})).status_code == 200


def test_the_document_cache_is_bounded_by_bytes_and_by_count() -> None:
    from graphql import parse

    cache = DocumentCache(max_entries=100, max_bytes=16_000)
    big = "{ bureaus { code } }\n#" + "x" * 1_100  # over max_bytes / 16: never kept
    cache.put(big, parse(big))
    assert len(cache) == 0 and cache.bytes == 0
    for number in range(40):
        text = f"{{ bureaus {{ code }} }} # {number:04d}" + " " * 900
        cache.put(text, parse(text))
    assert cache.bytes <= 16_000 and len(cache) == cache.bytes // len(text)
    assert cache.get(text) is not None  # the newest stays
    small = DocumentCache(max_entries=3, max_bytes=1_000_000)
    for number in range(10):
        small.put(f"{{ a{number} }}", parse(f"{{ a{number} }}"))
    assert len(small) == 3


async def test_a_declared_body_over_the_limit_gets_413_unread(gateway: GatewayProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode()
            + b'{"query": "'
        )
        await writer.drain()
        # Answered without the other 50 MB ever being sent.
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert head.startswith(b"HTTP/1.1 413"), head
    finally:
        writer.close()


# (Open311's routes answer in the specification's format: tests/http/open311/test_limits.py.)
@pytest.mark.parametrize("path", ["/graphql", "/oauth/token", "/oauth/introspect"])
async def test_a_streamed_body_over_the_limit_gets_413(http: httpx.AsyncClient, path: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # Sent in full (the limit passes on the last chunk), so the caller is reading, not
        # writing, when the gateway answers and closes.
        yield b'{"query": "'
        for _ in range(BODY_LIMIT // 65536):
            yield b"x" * 65536
        yield b"x" * 1000 + b'"}'

    content_type = "application/json" if path == "/graphql" else "application/x-www-form-urlencoded"
    response = await http.post(path, content=chunks(), headers={"content-type": content_type})
    assert response.status_code == 413
    assert error_code(response) == "PAYLOAD_TOO_LARGE"


async def test_json_nested_past_the_limit_is_bad_input(http: httpx.AsyncClient) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    response = await http.post(
        "/graphql", content=deep.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"
    assert response.headers["x-request-id"]


async def test_a_deeply_nested_document_is_bad_input_not_an_internal_error(
    http: httpx.AsyncClient,
) -> None:
    document = "{ " + "bureaus { " * 400 + "code" + " }" * 400 + " }"
    response = await http.post("/graphql", json={"query": document})
    assert response.status_code == 200
    codes = {e["extensions"]["code"] for e in response.json()["errors"]}
    assert "INTERNAL_ERROR" not in codes and codes <= {
        "BAD_REQUEST",
        "GRAPHQL_VALIDATION_FAILED",
        "INVALID_INPUT",
    }


async def test_a_batch_is_refused_and_audited(
    gateway: GatewayProcess, tokens: TokenFactory, owner: Any
) -> None:
    async with client_from(gateway.base_url, stranger_address()) as http:
        response = await http.post(
            "/graphql",
            json=[{"query": "{ me { subject } }"}, {"query": "{ me { subject } }"}],
            headers={"authorization": f"Bearer {tokens.named('pwb-viewer')}"},
        )
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"
    record = await owner.fetchrow(
        "SELECT subject, category, decision FROM audit_record WHERE request_id = $1",
        response.headers["x-request-id"],
    )
    assert dict(record) == {"subject": "pwb-viewer", "category": "refusal", "decision": "DENY"}


# --- WebSockets -------------------------------------------------------------------------------


async def connect(gateway: GatewayProcess, token: str | None) -> Any:
    socket = await websockets.connect(
        gateway.base_url.replace("http", "ws") + "/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
    )
    payload = {"Authorization": f"Bearer {token}"} if token else {}
    await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
    return socket


async def acknowledged(socket: Any) -> bool:
    try:
        message = await socket_message(socket, 10)
    except ConnectionClosed:
        return False
    return bool(message["type"] == "connection_ack")


async def test_an_anonymous_connection_is_refused_at_connection_init(
    gateway: GatewayProcess,
) -> None:
    socket = await connect(gateway, None)
    assert not await acknowledged(socket)
    assert socket.close_code == 4403


async def test_connections_are_bounded_per_caller(
    gateway: GatewayProcess, tokens: TokenFactory
) -> None:
    token = tokens.custom(
        subject="many-sockets", kind="staff", bureau="POLICE", scopes=["incidents:read"]
    )
    sockets = [await connect(gateway, token) for _ in range(8)]  # the default bound
    try:
        assert all([await acknowledged(s) for s in sockets])
        extra = await connect(gateway, token)
        assert not await acknowledged(extra)
        assert extra.close_code == 4403
        # Another caller is not affected, and a closed connection frees its slot.
        other = await connect(gateway, tokens.named("police-viewer"))
        assert await acknowledged(other)
        await other.close()
        await sockets.pop().close()
        await asyncio.sleep(0.2)
        again = await connect(gateway, token)
        assert await acknowledged(again)
        sockets.append(again)
    finally:
        for socket in sockets:
            await socket.close()


def test_the_socket_budget_holds_in_all_and_per_caller() -> None:
    budget = SocketBudget(total=2, per_principal=1)
    assert budget.open() and budget.open() and not budget.open()
    assert budget.claim("a") and not budget.claim("a") and budget.claim("b")
    budget.release("a")
    assert budget.claim("a")
    budget.close()
    assert budget.open()


async def test_changes_a_subscriber_may_not_see_cost_no_transaction(
    gateway: GatewayProcess, http: httpx.AsyncClient, tokens: TokenFactory, clean: None
) -> None:
    """A police viewer subscribes; Public Works' changes are passed over on the notice's facts
    (no event transaction), and its own bureau's change is delivered (one transaction)."""
    socket = await connect(gateway, tokens.named("police-viewer"))
    assert await acknowledged(socket)
    await socket.send(
        json.dumps(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": "subscription { incidentChanged { incident { title } } }"},
            }
        )
    )
    await asyncio.sleep(0.3)  # the subscription is registered before the changes are made
    before = events_read(await http.get("/metrics"))
    pwb = GraphQLClient(http, tokens.named("pwb-supervisor"))
    for number in range(10):
        await create_incident(pwb, title=f"not for the police {number}")
    police_camera = GraphQLClient(http, tokens.named("camera-gateway"))
    await create_incident(police_camera, title="for the police", category="ILLEGAL_PARKING")
    message = await socket_message(socket, 10)
    assert message["payload"]["data"]["incidentChanged"]["incident"]["title"] == "for the police"
    # The delivered event's transaction stays open until the subscription takes its next
    # notice: one more change it may not see closes it (and costs none of its own).
    await create_incident(pwb, title="not for the police either")
    after = before
    for _ in range(200):  # up to 20 s: a gateway under coverage is slow
        after = events_read(await http.get("/metrics"))
        if after > before:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # a second transaction, if there were one, would be counted by now
    after = events_read(await http.get("/metrics"))
    await socket.close()
    assert after - before == 1


def events_read(metrics: httpx.Response) -> float:
    """Transactions opened for subscription events (the statements histogram's count)."""
    match = re.search(
        r'^lighthouse_db_statements_per_operation_count\{operation="incidentChanged"\} (\S+)$',
        metrics.text,
        re.MULTILINE,
    )
    return float(match.group(1)) if match else 0.0
