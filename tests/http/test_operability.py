"""Health, readiness, metrics, request ids and structured logs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support import GraphQLClient


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


async def test_graphiql_is_served_outside_production(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
