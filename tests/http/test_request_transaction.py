"""The request's unit of work has one owner: protected routes get it from the middleware, and a
route may instead run short transactions of its own, holding no connection between them, each
under the caller's identity (row-level security) and re-checking the caller's token."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.access.scope import OperationDescription
from api.app import create_app
from api.auth.tokens import InvalidToken
from api.domain.errors import Forbidden
from api.graph.core.bundle import DomainBundle
from api.graph.domains import DOMAINS
from api.http.openai import OPENAI_ERRORS
from api.http.transaction import TransactionMode, protected, request_transaction
from api.repositories.incidents import NEWEST_FIRST, IncidentFilter
from api.repositories.sql import page_request
from api.services.incidents.reads import IncidentReads
from api.settings import (
    HttpSettings,
)
from tests.graph.helpers import global_id, key_of
from tests.support import (
    DatabaseUnderTest,
    InProcessGateway,
    free_port,
    idle_in_transaction,
    in_process_settings,
)
from tests.tokens import TokenFactory
from tests.vision.conftest import now_iso
from tests.vision.images import photo

pytestmark = pytest.mark.db

POOL_SIZE = 2
HOLD_SECONDS = 1.0


@dataclass
class Probe:
    """What the probe routes saw, shared with the test (same process, same loop)."""

    between: asyncio.Event = field(default_factory=asyncio.Event)
    resume: asyncio.Event = field(default_factory=asyncio.Event)
    hold_started: list[float] = field(default_factory=list)
    all_holding: asyncio.Event = field(default_factory=asyncio.Event)


def describe(name: str) -> OperationDescription:
    return OperationDescription(category="probe", name=name, kind="rest")


def probe_bundle(probe: Probe) -> DomainBundle:
    async def short(request: Request) -> Response:
        transaction = request_transaction(request)
        seen: list[dict[str, object]] = []
        try:
            for step in ("reserve", "settle"):
                async with transaction.transaction(lambda step=step: describe(step)) as access:
                    row = await access.uow.fetchrow(
                        "SELECT current_setting('lighthouse.subject') AS subject,"
                        " (SELECT count(*) FROM incident) AS visible,"
                        " pg_backend_pid() AS backend"
                    )
                    assert row is not None
                    seen.append(dict(row))
                if step == "reserve":
                    # The long part: no transaction, no pooled connection.
                    probe.between.set()
                    await probe.resume.wait()
        except InvalidToken as error:
            return JSONResponse({"refused": error.reason, "seen": seen}, status_code=401)
        return JSONResponse({"seen": seen})

    async def hold(request: Request) -> Response:
        transaction = request_transaction(request)
        access = transaction.access(lambda: describe("hold"))
        probe.hold_started.append(time.monotonic())
        if len(probe.hold_started) == POOL_SIZE:
            probe.all_holding.set()
        await access.uow.fetchval("SELECT pg_sleep($1)", HOLD_SECONDS)
        await transaction.commit()
        return JSONResponse({"held": True})

    async def incidents(request: Request) -> Response:
        """A REST read of the incident board, through the graph's own read service."""
        transaction = request_transaction(request)
        access = transaction.access(lambda: describe("incidents"))
        try:
            page = await IncidentReads(access).page(
                IncidentFilter(),
                NEWEST_FIRST,
                page_request(
                    NEWEST_FIRST,
                    first=50,
                    after=None,
                    last=None,
                    before=None,
                    default_size=50,
                    max_size=50,
                ),
            )
        except Forbidden as error:
            await transaction.commit()
            return JSONResponse({"error": error.message}, status_code=403)
        await transaction.commit()
        return JSONResponse({"ids": [record.id for record in page.items]})

    async def broken(request: Request) -> Response:
        raise RuntimeError("a fault no route answers")

    return DomainBundle(
        name="probe",
        routes=(
            protected("/probe/short", short, methods=["POST"], mode=TransactionMode.SHORT),
            protected("/probe/hold", hold, methods=["POST"]),
            protected("/probe/incidents", incidents, methods=["GET"]),
            protected("/probe/broken", broken, methods=["GET"]),
            protected("/v1/probe/broken", broken, methods=["GET"], errors=OPENAI_ERRORS),
        ),
    )


async def one_incident_per_bureau(database: DatabaseUnderTest, *codes: str) -> None:
    """An incident responsible to each bureau named (every bureau if none is)."""
    owner = await asyncpg.connect(database.owner_url)
    try:
        await owner.execute(
            "INSERT INTO lighthouse.incident (title, category, status, source, responsible_bureau_id,"
            " latitude, longitude, reported_at, due_at, created_by)"
            " SELECT 'probe', 'POTHOLE', 'VERIFIED', 'STAFF', b.id, 22.6, 120.3, now(), now(), 'test'"
            " FROM lighthouse.bureau b WHERE cardinality($1::text[]) = 0 OR b.code = ANY($1)",
            list(codes),
        )
    finally:
        await owner.close()


@asynccontextmanager
async def serving(
    database: DatabaseUnderTest, **groups: Any
) -> AsyncIterator[tuple[str, Probe, TokenFactory]]:
    """The gateway with the probe routes, on a pool of ``POOL_SIZE`` (``groups``: settings)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = in_process_settings(database, issuer, pool_max_size=POOL_SIZE, **groups)
    probe = Probe()
    app = create_app(settings, [*DOMAINS.values(), probe_bundle(probe)])
    async with InProcessGateway(app, port) as gateway:
        try:
            yield gateway.base_url, probe, TokenFactory(database.owner_url, issuer)
        finally:
            probe.resume.set()  # a failed test must not leave a route waiting


@pytest.fixture
async def served(database: DatabaseUnderTest) -> AsyncIterator[tuple[str, Probe, TokenFactory]]:
    async with serving(database) as served:
        yield served


async def test_a_short_route_holds_no_connection_between_its_transactions(
    served: tuple[str, Probe, TokenFactory], database: DatabaseUnderTest, clean: None
) -> None:
    base_url, probe, tokens = served
    await one_incident_per_bureau(database, "PUBLIC_WORKS", "POLICE")
    police = tokens.named("police-viewer")
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        short = asyncio.create_task(
            http.post("/probe/short", headers={"authorization": f"Bearer {police}"})
        )
        await asyncio.wait_for(probe.between.wait(), timeout=10)
        # While the short route works, others take the whole pool: both get a connection at
        # once, so the short route holds none.
        city = tokens.named("city-viewer")
        fired = time.monotonic()
        holds = [
            asyncio.create_task(
                http.post("/probe/hold", headers={"authorization": f"Bearer {city}"})
            )
            for _ in range(POOL_SIZE)
        ]
        await asyncio.wait_for(probe.all_holding.wait(), timeout=10)
        assert max(probe.hold_started) - fired < HOLD_SECONDS / 2, "a hold waited for a connection"
        # The pool is exhausted now; the short route's next transaction waits for it, then runs.
        probe.resume.set()
        responses = await asyncio.gather(*holds)
        assert all(r.status_code == 200 for r in responses)
        answer = await short
    assert answer.status_code == 200, answer.text
    seen = answer.json()["seen"]
    # Both transactions ran as the caller, and row-level security applied to each.
    assert [s["subject"] for s in seen] == ["police-viewer", "police-viewer"]
    assert [s["visible"] for s in seen] == [1, 1]


async def test_each_short_transaction_checks_the_token_again(
    served: tuple[str, Probe, TokenFactory], database: DatabaseUnderTest
) -> None:
    base_url, probe, tokens = served
    token = tokens.custom(
        subject="revoked-midway", kind="staff", bureau="POLICE", scopes=["incidents:read"]
    )
    payload = token.split(".")[1]
    jti = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        short = asyncio.create_task(
            http.post("/probe/short", headers={"authorization": f"Bearer {token}"})
        )
        await asyncio.wait_for(probe.between.wait(), timeout=10)
        owner = await asyncpg.connect(database.owner_url)
        try:
            await owner.execute(
                "INSERT INTO lighthouse.revoked_token (jti, client_id, expires_at)"
                " VALUES ($1, 'lighthouse-tests', now() + interval '1 hour')",
                jti,
            )
            probe.resume.set()
            answer = await short
            audited = await owner.fetch(
                "SELECT operation FROM lighthouse.audit_record WHERE subject = 'revoked-midway'"
                " AND category = 'probe'"
            )
        finally:
            await owner.close()
    assert answer.status_code == 401
    assert answer.json() == {
        "refused": "the token has been revoked",
        "seen": [answer.json()["seen"][0]],
    }
    # The first step committed with its audit record; the refused one left nothing.
    assert [r["operation"] for r in audited] == ["reserve"]


async def test_an_unprotected_handler_cannot_reach_a_transaction(
    served: tuple[str, Probe, TokenFactory],
) -> None:
    base_url, _, _ = served
    async with httpx.AsyncClient(base_url=base_url) as http:
        refused = await http.post("/probe/short", headers={"authorization": "Bearer nonsense"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Bearer realm="lighthouse"')


async def test_a_rest_read_is_authorized_and_audited_as_the_graph_read_is(
    served: tuple[str, Probe, TokenFactory], database: DatabaseUnderTest, clean: None
) -> None:
    base_url, _, tokens = served
    await one_incident_per_bureau(database)
    owner = await asyncpg.connect(database.owner_url)
    try:
        answers = {}
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            for name in ("police-viewer", "auditor"):
                headers = {"authorization": f"Bearer {tokens.named(name)}"}
                rest = await http.get("/probe/incidents", headers=headers)
                graph = await http.post(
                    "/graphql",
                    json={"query": "{ incidents(first: 50) { edges { node { id } } } }"},
                    headers=headers,
                )
                answers[name] = (rest, graph)
        records = {
            row["request_id"]: row
            for row in await owner.fetch(
                "SELECT request_id, resource_ids, decision, policy_ids FROM lighthouse.audit_record"
            )
        }
    finally:
        await owner.close()
    rest, graph = answers["police-viewer"]
    assert rest.status_code == 200
    graph_ids = [key_of(e["node"]["id"]) for e in graph.json()["data"]["incidents"]["edges"]]
    assert rest.json()["ids"] == graph_ids and len(graph_ids) == 1
    for name, decision in (("police-viewer", "ALLOW"), ("auditor", "DENY")):
        rest, graph = answers[name]
        rest_record = records[rest.headers["x-request-id"]]
        graph_record = records[graph.headers["x-request-id"]]
        assert rest_record["decision"] == graph_record["decision"] == decision
        assert rest_record["policy_ids"] == graph_record["policy_ids"]
        assert rest_record["resource_ids"] == graph_record["resource_ids"]
    assert answers["auditor"][0].status_code == 403
    assert answers["auditor"][1].json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# --- A caller's body arrives before any connection is taken -----------------------------------

TRICKLERS = 3 * POOL_SIZE
TRICKLE_SECONDS = 3.0
SMALL_QUERY = {"query": "{ me { subject } }"}
UPLOAD = """
mutation Upload($file: Upload!, $camera: ID!, $at: DateTime!) {
  uploadFrame(file: $file, camera: $camera, capturedAt: $at) { __typename }
}
"""


def json_request(token: str) -> tuple[dict[str, str], bytes]:
    """A read-only viewer's query, as its headers and body."""
    body = json.dumps({"query": "{ incidents(first: 1) { totalCount } }"}).encode()
    return {"authorization": f"Bearer {token}", "content-type": "application/json"}, body


def upload_request(token: str) -> tuple[dict[str, str], bytes]:
    """A camera gateway's frame (the GraphQL multipart request), as its headers and body."""
    variables = {"file": None, "camera": global_id("Asset", 999_999), "at": now_iso()}
    request = httpx.Request(
        "POST",
        "http://gateway/graphql",
        data={
            "operations": json.dumps({"query": UPLOAD, "variables": variables}),
            "map": json.dumps({"0": ["variables.file"]}),
        },
        files={"0": ("frame.jpg", photo(31, size=(320, 240)), "image/jpeg")},
        headers={"authorization": f"Bearer {token}", "GraphQL-Require-Preflight": "1"},
    )
    body = request.read()
    headers = {k: v for k, v in request.headers.items() if k in ("authorization", "content-type")}
    return headers | {"graphql-require-preflight": "1"}, body


async def trickle(
    base_url: str,
    headers: dict[str, str],
    body: bytes,
    seconds: float,
    pieces: int = 10,
    length: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST /graphql, its headers at once and its body in ``pieces`` over ``seconds``; the
    answer's status and JSON body. (``length``: the length declared, if not the body's.)"""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    declared = len(body) if length is None else length
    head = ["POST /graphql HTTP/1.1", f"host: {host}:{port}", f"content-length: {declared}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join([*head, "connection: close"]) + "\r\n\r\n").encode())
    answering = asyncio.create_task(read_all(reader))
    step = -(-len(body) // pieces)
    try:
        for start in range(0, len(body), step):
            await asyncio.sleep(seconds / pieces)
            if answering.done():
                break  # answered before the body was all sent
            writer.write(body[start : start + step])
            await writer.drain()
    except ConnectionError:
        pass  # answered, and the connection closed, before the body was all sent
    answer = await answering
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(payload) if payload else {}


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection (kept if it is then reset)."""
    chunks = []
    try:
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    except ConnectionError:
        pass
    return b"".join(chunks)


async def test_slow_bodies_hold_no_connection_and_starve_no_one(
    served: tuple[str, Probe, TokenFactory], database: DatabaseUnderTest
) -> None:
    """More callers than the pool has connections send their bodies slowly (a viewer's query, a
    camera's frame): meanwhile no connection is idle in a transaction, and another caller's
    query is answered at once."""
    base_url, _, tokens = served
    viewer, camera = tokens.named("city-viewer"), tokens.named("camera-gateway")
    requests = [json_request(viewer) if n % 2 else upload_request(camera) for n in range(TRICKLERS)]
    tricklers = [
        asyncio.create_task(trickle(base_url, headers, body, TRICKLE_SECONDS))
        for headers, body in requests
    ]
    owner = await asyncpg.connect(database.owner_url)
    try:
        await asyncio.sleep(TRICKLE_SECONDS / 4)  # every trickler's headers are in
        held = [await idle_in_transaction(owner, database)]
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            started = time.monotonic()
            answer = await http.post(
                "/graphql", json=SMALL_QUERY, headers={"authorization": f"Bearer {viewer}"}
            )
            waited = time.monotonic() - started
        held.append(await idle_in_transaction(owner, database))
        assert not all(t.done() for t in tricklers), "the bodies arrived before the query"
        answers = await asyncio.gather(*tricklers)
    finally:
        await owner.close()
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["me"]["subject"] == "city-viewer"
    assert waited < 1.0, f"a one-line query waited {waited:.2f} s behind slow bodies"
    assert held == [0, 0], "connections were held idle in a transaction while bodies arrived"
    for (status, payload), (headers, _) in zip(answers, requests, strict=True):
        assert status == 200, payload
        if headers["content-type"] == "application/json":
            assert payload["data"]["incidents"]["totalCount"] >= 0
        else:
            assert payload["data"]["uploadFrame"]["__typename"] == "NotFound"


@pytest.fixture
async def impatient(database: DatabaseUnderTest) -> AsyncIterator[tuple[str, Probe, TokenFactory]]:
    """A gateway that waits one second for a request's body."""
    async with serving(database, http=HttpSettings(max_body_seconds=1.0)) as served:
        yield served


@pytest.mark.parametrize("pieces", [1, 30], ids=["stalled", "trickled"])
async def test_a_body_that_does_not_arrive_in_time_gets_408(
    impatient: tuple[str, Probe, TokenFactory], database: DatabaseUnderTest, pieces: int
) -> None:
    """A body that stalls half-way, or trickles in a byte at a time, is answered 408 once its
    time is up (a typed error), holding no connection meanwhile."""
    base_url, _, tokens = impatient
    headers, body = json_request(tokens.named("city-viewer"))
    # Half the body, then nothing (stalled); or all of it, over three seconds (trickled).
    sent = body[: len(body) // 2] if pieces == 1 else body
    started = time.monotonic()
    slow = asyncio.create_task(trickle(base_url, headers, sent, 3.0, pieces, len(body)))
    owner = await asyncpg.connect(database.owner_url)
    try:
        await asyncio.sleep(0.5)
        held = await idle_in_transaction(owner, database)
    finally:
        await owner.close()
    status, payload = await asyncio.wait_for(slow, timeout=10)
    assert time.monotonic() - started < 5
    assert status == 408, payload
    assert payload["errors"][0]["extensions"]["code"] == "REQUEST_TIMEOUT"
    assert held == 0


async def test_an_unexpected_failure_is_answered_in_the_routes_shape_naming_only_the_request(
    served: tuple[str, Probe, TokenFactory],
) -> None:
    """Not Starlette's plain-text page: JSON a client parses, in the route's error shape, with
    the request id (also in X-Request-ID) and nothing of the failure itself."""
    base_url, _, tokens = served
    headers = {"authorization": f"Bearer {tokens.named('pwb-supervisor')}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        plain = await http.get("/probe/broken", headers=headers)
        openai = await http.get("/v1/probe/broken", headers=headers)
    for answer in (plain, openai):
        assert answer.status_code == 500
        assert answer.headers["content-type"] == "application/json"
        assert "a fault no route answers" not in answer.text
        assert answer.headers["x-request-id"] and answer.headers["x-request-id"] in answer.text
    extensions = plain.json()["errors"][0]["extensions"]
    assert extensions == {
        "code": "INTERNAL_SERVER_ERROR",
        "requestId": plain.headers["x-request-id"],
    }
    assert openai.json()["error"]["type"] == "server_error"
    assert openai.json()["error"]["code"] == "internal_error"
