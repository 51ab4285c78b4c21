"""Health, readiness, metrics, request ids and structured logs."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets

from tests.support import GatewayProcess, GraphQLClient, socket_message
from tests.tokens import TokenFactory


def _log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


async def test_liveness(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


async def test_readiness_reports_database_and_migrations(http: httpx.AsyncClient) -> None:
    response = await http.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["migrations"] == "current"
    assert body["revision"] == body["expectedRevision"]
    assert body["changeFeed"] == "listening"


async def test_request_id_is_returned_and_logged(http: httpx.AsyncClient, log_path: Path) -> None:
    response = await http.get("/healthz", headers={"X-Request-ID": "audit-trace-12345"})
    assert response.headers["x-request-id"] == "audit-trace-12345"
    generated = await http.get("/healthz", headers={"X-Request-ID": "bad id;"})
    assert generated.headers["x-request-id"] != "bad id;"
    assert len(generated.headers["x-request-id"]) == 32
    lines = [json.loads(line) for line in _log_lines(log_path) if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "http.request"]
    assert any(
        line["request_id"] == "audit-trace-12345" and line["status"] == 200 for line in access
    )


async def _logged(path: Path, request_id: str, event: str) -> dict[str, Any]:
    """The log line of ``event`` for ``request_id`` (written as the connection ends: waited for,
    up to ten seconds)."""
    for _ in range(200):
        for line in _log_lines(path):
            if line.startswith("{") and request_id in line:
                entry: dict[str, Any] = json.loads(line)
                if entry.get("event") == event and entry.get("request_id") == request_id:
                    return entry
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event} logged for {request_id}")


async def test_a_websocket_is_logged_as_it_ended_not_as_a_server_error(
    gateway: GatewayProcess, tokens: TokenFactory, log_path: Path
) -> None:
    url = gateway.base_url.replace("http://", "ws://") + "/graphql"
    token = tokens.named("pwb-dispatcher")
    # Accepted, then closed by the client: 101, closed by the client with its code.
    left = f"socket-left-{uuid.uuid4().hex}"
    async with websockets.connect(
        url, subprotocols=["graphql-transport-ws"], additional_headers={"X-Request-ID": left}
    ) as socket:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await socket.send(json.dumps(init))
        assert (await socket_message(socket))["type"] == "connection_ack"
        await socket.close(1000)
    entry = await _logged(log_path, left, "websocket.closed")
    assert (entry["status"], entry["closed_by"], entry["close_code"]) == (101, "client", 1000)
    # Accepted, then closed by the gateway: a connection_init without a token (4403).
    refused = f"socket-refused-{uuid.uuid4().hex}"
    async with websockets.connect(
        url, subprotocols=["graphql-transport-ws"], additional_headers={"X-Request-ID": refused}
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        await socket.wait_closed()
        assert socket.close_code == 4403
    entry = await _logged(log_path, refused, "websocket.closed")
    assert (entry["status"], entry["closed_by"], entry["close_code"]) == (101, "gateway", 4403)


async def test_the_access_log_names_the_caller_the_operation_and_why_it_was_refused(
    http: httpx.AsyncClient, tokens: TokenFactory, log_path: Path
) -> None:
    async def logged(headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        request_id = f"logged-{uuid.uuid4().hex}"
        await http.post("/graphql", json=body, headers={**headers, "X-Request-ID": request_id})
        return await _logged(log_path, request_id, "http.request")

    dispatcher = {"Authorization": f"Bearer {tokens.named('pwb-dispatcher')}"}
    served = await logged(
        dispatcher, {"query": "query Board { incidents(first: 1) { totalCount } }"}
    )
    assert (served["principal"], served["operation"], served["status"]) == (
        "pwb-dispatcher", "Board", 200)  # fmt: skip
    assert "refusal" not in served and "decision" not in served
    denied = await logged(dispatcher, {"query": "query Trail { auditRecords { totalCount } }"})
    assert (denied["operation"], denied["decision"]) == ("Trail", "DENY")
    anonymous = await logged({}, {"query": "query Nobody { incidents { totalCount } }"})
    assert (anonymous["status"], anonymous["refusal"], anonymous["principal"]) == (
        401, "UNAUTHENTICATED", "anonymous")  # fmt: skip
    forged = await logged({"Authorization": "Bearer forged"}, {"query": "{ me { subject } }"})
    assert (forged["status"], forged["refusal"]) == (401, "UNAUTHENTICATED")
    deep = "query Deep { incidents { edges { node { " + "duplicateOf { " * 12 + "id"
    refused = await logged(dispatcher, {"query": deep + " }" * 12 + " } } } }"})
    assert (refused["operation"], refused["refusal"]) == ("Deep", "DOCUMENT_REFUSED")


async def test_metrics_count_operations_errors_and_pool(
    http: httpx.AsyncClient, client: GraphQLClient
) -> None:
    await client.execute("query CountMe { bureaus { code } }")
    await client.execute('query Broken { incident(id: "nope") { id } }')
    text = (await http.get("/metrics")).text
    assert (
        'lighthouse_graphql_operations_total{operation="CountMe",outcome="ok",type="query"}' in text
    )
    assert (
        'lighthouse_graphql_operations_total{operation="Broken",outcome="error",type="query"}'
        in text
    )
    assert (
        'lighthouse_graphql_operation_seconds_bucket{le="0.005",operation="CountMe",type="query"}'
        in text
    )
    assert "lighthouse_db_pool_connections " in text
    assert 'lighthouse_http_requests_total{method="POST",route="/graphql",status="200"}' in text


async def test_metrics_count_each_route_by_its_template(http: httpx.AsyncClient) -> None:
    """One series per route, whatever the path's values; a path no route serves is "other"."""
    for path in ("/v1/models/a-model", "/v1/models/another", "/frames/" + "0" * 64,
                 "/open311/v2/services.json", "/no/such/route"):  # fmt: skip
        await http.get(path)
    text = (await http.get("/metrics")).text
    for series in (
        'lighthouse_http_requests_total{method="GET",route="/v1/models/{model}",status="401"} ',
        'lighthouse_http_requests_total{method="GET",route="/frames/{sha256}",status="401"} ',
        'lighthouse_http_requests_total{method="GET",route="/open311/v2/services.json",'
        'status="200"} ',
        'lighthouse_http_requests_total{method="GET",route="other",status="404"} ',
    ):
        assert series in text, (series, [ln for ln in text.splitlines() if "route=" in ln])
    assert "a-model" not in text and "/no/such/route" not in text


async def test_metrics_say_which_release_runs_its_sockets_tokens_and_process(
    http: httpx.AsyncClient, gateway: GatewayProcess, tokens: TokenFactory
) -> None:
    from importlib.metadata import version

    def value(text: str, series: str) -> float:
        line = next((ln for ln in text.splitlines() if ln.startswith(series + " ")), None)
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    text = (await http.get("/metrics")).text
    build = next(line for line in text.splitlines() if line.startswith("lighthouse_build_info{"))
    assert f'version="{version("lighthouse")}"' in build and 'schema_revision="' in build
    assert build.endswith(" 1.0") and 'policy_version="' in build
    for series in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                   "process_open_fds", "python_info{"):  # fmt: skip
        assert series in text, series
    # WebSockets open now, read at scrape time.
    url = gateway.base_url.replace("http://", "ws://") + "/graphql"
    idle = value(text, "lighthouse_websockets_open")
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:
        token = tokens.named("pwb-viewer")
        await socket.send(json.dumps({"type": "connection_init",
                                      "payload": {"Authorization": f"Bearer {token}"}}))  # fmt: skip
        assert (await socket_message(socket))["type"] == "connection_ack"
        opened = value((await http.get("/metrics")).text, "lighthouse_websockets_open")
        assert opened == idle + 1
    # Tokens at /oauth/token, by outcome: refused for a wrong secret, issued for the right one.
    series = 'lighthouse_oauth_tokens_total{outcome="invalid_client"}'
    before = value(text, series)
    refused = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                              auth=("no-such-client", "wrong"))  # fmt: skip
    assert refused.status_code == 401
    assert value((await http.get("/metrics")).text, series) == before + 1


async def test_graphiql_is_served_outside_production(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
