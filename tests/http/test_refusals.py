"""Refusals are audited without letting one source write unbounded rows: the first of a window
is recorded at once, the rest counted into one aggregate record, and past the limit the source
is throttled (429) — other sources untouched, the chain intact."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from api.app import create_app
from api.db.pool import connect
from api.repositories.audit import AuditRepository
from api.services.audit_chain import verify_chain
from api.settings import (
    DatabaseSettings,
    Environment,
    OAuthSettings,
    Settings,
    load_settings,
)
from tests.support import (
    DatabaseUnderTest,
    InProcessGateway,
    client_from,
    free_port,
    stranger_address,
)

LIMIT = 5
QUERY = {"query": "{ me { subject } }"}


async def test_a_flood_of_bad_tokens_writes_two_rows_and_is_throttled(
    database: DatabaseUnderTest,
) -> None:
    port = free_port()
    settings = load_settings(
        environment=Environment.TEST,
        database=DatabaseSettings(
            url=database.app_url, owner_url=database.owner_url, migrate_on_start=False
        ),
        oauth=OAuthSettings(issuer=f"http://127.0.0.1:{port}", refusals_per_minute=LIMIT),
    )
    flooder, bystander = stranger_address(), stranger_address()
    bad = {"authorization": "Bearer not.a.token"}
    async with InProcessGateway(create_app(settings), port) as gateway:
        async with client_from(gateway.base_url, flooder) as http:
            statuses = [(await http.post("/graphql", json=QUERY, headers=bad)) for _ in range(12)]
        async with client_from(gateway.base_url, bystander) as http:
            other = await http.post("/graphql", json=QUERY, headers=bad)
        owner = await connect(database.owner_url, Settings(), "refusal-test")
        try:
            during = await owner.fetchval(
                "SELECT count(*) FROM lighthouse.audit_record WHERE subject = $1",
                f"unauthenticated@{flooder}",
            )
        finally:
            await owner.close()
    assert [r.status_code for r in statuses] == [401] * LIMIT + [429] * (12 - LIMIT)
    assert int(statuses[-1].headers["retry-after"]) >= 1
    assert statuses[-1].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert other.status_code == 401
    assert during == 1  # the first refusal, at once; the others wait for the window to close
    owner = await connect(database.owner_url, Settings(), "refusal-test")
    try:
        rows = await owner.fetch(
            "SELECT payload FROM lighthouse.audit_record WHERE subject = $1 ORDER BY seq",
            f"unauthenticated@{flooder}",
        )
        details = [orjson.loads(row["payload"])["details"] for row in rows]
        verification = await verify_chain(AuditRepository(owner), 1, None)
    finally:
        await owner.close()
    # Stopping the gateway closed the window: one aggregate record for the other eleven.
    assert len(details) == 2
    assert "reason" in details[0]
    assert details[1]["aggregate"] is True and details[1]["count"] == 11
    assert details[1]["first"] <= details[1]["last"]
    assert sum(details[1]["reasons"].values()) == 11
    assert verification.intact


async def test_open311_refusals_are_throttled_in_the_specifications_format(
    database: DatabaseUnderTest,
) -> None:
    port = free_port()
    settings = load_settings(
        environment=Environment.TEST,
        database=DatabaseSettings(
            url=database.app_url, owner_url=database.owner_url, migrate_on_start=False
        ),
        oauth=OAuthSettings(issuer=f"http://127.0.0.1:{port}", refusals_per_minute=LIMIT),
    )
    guesses = [{"api_key": f"l311_guess-{number}"} for number in range(8)]
    async with (
        InProcessGateway(create_app(settings), port) as gateway,
        client_from(gateway.base_url, stranger_address()) as http,
    ):
        answers = [await http.get("/open311/v2/requests.xml", params=guess) for guess in guesses]
    assert [a.status_code for a in answers] == [403] * LIMIT + [429] * (8 - LIMIT)
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert answers[-1].headers["content-type"] == "text/xml; charset=utf-8"
    assert "<errors><error><code>429</code>" in answers[-1].text


async def declaring_a_gigabyte(port: int, path: str) -> tuple[int, bytes]:
    """A POST whose headers declare a gigabyte of body (none is sent): the answer's status and
    body. (HTTP clients will not send a length they do not hold.)"""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {1 << 30}\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = int(head.split(b" ", 2)[1])
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))  # fmt: skip
        return status, await asyncio.wait_for(reader.readexactly(length), 10)
    finally:
        writer.close()


def shape_of(response: httpx.Response) -> str:
    """Which error shape an answer is in, and its code."""
    body = response.json()
    if "errors" in body:
        return f"graphql:{body['errors'][0]['extensions']['code']}"
    error = body["error"]
    if "type" in error:  # OpenAI's
        return f"openai:{error['code']}"
    return f"frames:{error['code']}"


async def test_each_route_family_is_refused_in_its_own_shape(database: DatabaseUnderTest) -> None:
    """The gateway's own refusals (401, 429, 413) read as the client's API words them: GraphQL's
    errors, OpenAI's error object (what the SDK parses), the frames' error."""
    port = free_port()
    settings = load_settings(
        environment=Environment.TEST,
        database=DatabaseSettings(
            url=database.app_url, owner_url=database.owner_url, migrate_on_start=False
        ),
        oauth=OAuthSettings(issuer=f"http://127.0.0.1:{port}", refusals_per_minute=LIMIT),
    )
    bad = {"authorization": "Bearer not.a.token"}
    families = {
        "/graphql": ("graphql", "POST"),
        "/v1/chat/completions": ("openai", "POST"),
        "/v1/models": ("openai", "GET"),
        "/frames": ("frames", "POST"),
    }
    async with InProcessGateway(create_app(settings), port) as gateway:
        for path, (shape, method) in families.items():
            async with client_from(gateway.base_url, stranger_address()) as http:
                answers = [
                    await http.request(method, path, json={}, headers=bad) for _ in range(LIMIT + 1)
                ]
                assert [a.status_code for a in answers] == [401] * LIMIT + [429], path
                assert shape_of(answers[0]).startswith(f"{shape}:"), (path, answers[0].text)
                assert answers[0].headers["www-authenticate"].startswith("Bearer")
                throttled = shape_of(answers[-1])
                assert throttled in {f"{shape}:RATE_LIMITED", f"{shape}:rate_limited"}, path
                assert int(answers[-1].headers["retry-after"]) >= 1
            if method == "POST":  # declared larger than any limit: refused unread
                status, body = await declaring_a_gigabyte(port, path)
                assert status == 413, path
                refused = httpx.Response(status, content=body)
                assert shape_of(refused) in {f"{shape}:PAYLOAD_TOO_LARGE", f"{shape}:too_large"}
