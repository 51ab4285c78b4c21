"""Refusals are audited without letting one source write unbounded rows: the first of a window
is recorded at once, the rest counted into one aggregate record, and past the limit the source
is throttled (429) — other sources untouched, the chain intact."""

from __future__ import annotations

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
