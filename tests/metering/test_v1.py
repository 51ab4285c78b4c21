"""Metered inference through ``/v1``, called with the OpenAI SDK by a licensee's client holding a
token from the city's authorization server (authlib).

The refusals here are decided before anything is forwarded and need no model; the tests that
reach the model are in test_v1_with_the_model.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import httpx
import openai
import pytest

from tests.conftest import _drop_database, gateway_env, make_database
from tests.metering.support import (
    MODEL,
    NOTHING_CHARGED,
    Licensed,
    access_token,
    as_admin,
    charged,
    hello,
    ledger,
    licensee_with_licence,
    png_uri,
    sdk,
)
from tests.support import DatabaseUnderTest, GatewayProcess, free_port


async def test_a_licensee_lists_only_the_models_its_licence_covers(
    gateway: GatewayProcess, database: DatabaseUnderTest
) -> None:
    licensed = await licensee_with_licence(database, models=[MODEL, "city-vlm-7b"])
    other = await licensee_with_licence(database, models=["another-model"])
    client = sdk(gateway, await access_token(gateway, licensed))
    assert sorted(m.id for m in (await client.models.list()).data) == ["city-vlm-7b", MODEL]
    theirs = sdk(gateway, await access_token(gateway, other))
    assert [m.id for m in (await theirs.models.list()).data] == ["another-model"]


async def test_without_a_valid_token_nothing_is_answered(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        await sdk(gateway, "not-a-token").chat.completions.create(model=MODEL, messages=hello())
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"
    async with httpx.AsyncClient(base_url=gateway.base_url) as http:
        response = await http.post("/v1/chat/completions", json={"model": MODEL})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_city_staff_and_services_are_not_metered_callers(
    gateway: GatewayProcess, tokens: object
) -> None:
    from tests.tokens import TokenFactory

    assert isinstance(tokens, TokenFactory)
    with pytest.raises(openai.PermissionDeniedError):
        await sdk(gateway, tokens.named("pwb-supervisor")).chat.completions.create(
            model=MODEL, messages=hello()
        )


@pytest.mark.parametrize(
    ("request_args", "error", "param"),
    [
        ({"model": "gpt-4o"}, openai.NotFoundError, "model"),
        ({"max_tokens": 65}, openai.BadRequestError, "max_tokens"),
        ({"n": 2}, openai.BadRequestError, "n"),
        ({"extra_body": {"guided_json": {}}}, openai.BadRequestError, "guided_json"),
        (
            {"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/car.png"}}]}]},
            openai.BadRequestError,
            "messages[0].content[0].image_url.url",
        ),
        (
            {"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": png_uri((400, 400), noise=True)}}]}]},
            openai.APIStatusError,  # 413
            "messages",
        ),
        (
            {"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": png_uri()}},
                {"type": "image_url", "image_url": {"url": png_uri()}}]}]},
            openai.BadRequestError,
            "messages",
        ),
        ({"metadata": {"purpose": "face-recognition"}}, openai.PermissionDeniedError, None),
    ],
)  # fmt: skip
async def test_what_the_licence_does_not_allow_is_refused_before_anything_is_forwarded(
    gateway: GatewayProcess,
    database: DatabaseUnderTest,
    licensed: Licensed,
    request_args: dict[str, object],
    error: type[openai.APIStatusError],
    param: str | None,
) -> None:
    client = sdk(gateway, await access_token(gateway, licensed))
    arguments: dict[str, object] = {"model": MODEL, "messages": hello()} | request_args
    with pytest.raises(error) as refused:
        await client.chat.completions.create(**arguments)  # type: ignore[call-overload]
    assert refused.value.message
    assert refused.value.param == param
    if error is openai.APIStatusError:
        assert refused.value.status_code == 413
    assert charged(await ledger(database, licensed.licence)) == NOTHING_CHARGED


async def test_suspended_expired_and_revoked_licences_are_refused(
    gateway: GatewayProcess, database: DatabaseUnderTest
) -> None:
    from datetime import timedelta

    expired = await licensee_with_licence(
        database,
        valid_from=datetime.now(UTC) - timedelta(days=60),
        valid_until=datetime.now(UTC) - timedelta(days=1),
    )
    suspended = await licensee_with_licence(database)
    await as_admin(database, lambda r: r.suspend(suspended.licence.id, "unpaid invoice"))
    revoked = await licensee_with_licence(database)
    await as_admin(database, lambda r: r.revoke(revoked.licence.id))
    for licensed, code in ((expired, "expired"), (suspended, "suspended"), (revoked, "revoked")):
        client = sdk(gateway, await access_token(gateway, licensed))
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await client.chat.completions.create(model=MODEL, messages=hello())
        assert refused.value.code == code
        assert charged(await ledger(database, licensed.licence)) == NOTHING_CHARGED


async def test_a_spent_quota_is_429_with_retry_after(
    gateway: GatewayProcess, database: DatabaseUnderTest
) -> None:
    licensed = await licensee_with_licence(database, quota_requests=0)
    client = sdk(gateway, await access_token(gateway, licensed))
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model=MODEL, messages=hello())
    assert refused.value.code == "requests"
    assert int(refused.value.response.headers["Retry-After"]) > 0


@pytest.fixture(scope="module")
def without_model(
    database: DatabaseUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A gateway whose serving tier is down (nothing listens where it points)."""
    process = GatewayProcess({}, tmp_path_factory.mktemp("no-model") / "gateway.log")
    process.configure(gateway_env(database, issuer=process.base_url))
    process.configure(
        {
            "LIGHTHOUSE_SERVING_URL": f"http://127.0.0.1:{free_port()}",
            "LIGHTHOUSE_SERVING_RETRIES": "0",
        }
    )
    process.start()
    yield process
    process.stop()


async def test_with_the_model_down_the_call_is_503_and_nothing_is_charged(
    without_model: GatewayProcess, database: DatabaseUnderTest, licensed: Licensed
) -> None:
    client = sdk(without_model, await access_token(without_model, licensed))
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as refused:
            await client.chat.completions.create(model=MODEL, messages=hello(), stream=stream)
        assert refused.value.status_code == 503
    state = await ledger(database, licensed.licence)
    assert charged(state) == NOTHING_CHARGED
    assert state["records_not_charged"] == 2 and state["records_ok"] == 0


@pytest.mark.db
async def test_calls_at_once_are_admitted_in_groups_each_audited_and_a_revoked_token_alone_refused(
    without_model: GatewayProcess, database: DatabaseUnderTest, licensed: Licensed
) -> None:
    good = await access_token(without_model, licensed)
    revoked = await access_token(without_model, licensed)
    async with httpx.AsyncClient(base_url=without_model.base_url) as http:
        answer = await http.post(
            "/oauth/revoke", data={"token": revoked}, auth=(licensed.client_id, licensed.secret)
        )
        assert answer.status_code == 200
    clients = [sdk(without_model, good), sdk(without_model, revoked)]

    async def one(n: int) -> int:
        try:
            await clients[n % 2].chat.completions.create(model=MODEL, messages=hello())
        except openai.APIStatusError as error:
            return error.status_code
        return 200

    outcomes = await asyncio.gather(*(one(n) for n in range(60)))
    # The good token's calls were admitted (then the model was down: 503, released); the
    # revoked token's were refused, whatever group they shared.
    assert sorted(outcomes) == [401] * 30 + [503] * 30
    assert [outcomes[n] for n in range(0, 60, 2)] == [503] * 30
    state = await ledger(database, licensed.licence)
    assert charged(state) == NOTHING_CHARGED
    assert state["records_not_charged"] == 30 and state["records_ok"] == 0
    owner = await asyncpg.connect(database.owner_url)
    try:
        admissions = await owner.fetchrow(
            "SELECT count(*) AS records, count(DISTINCT request_id) AS callers,"
            " count(DISTINCT xmin::text) AS transactions FROM lighthouse.audit_record"
            " WHERE operation = 'POST /v1/chat/completions' AND client_id = $1",
            licensed.client_id,
        )
    finally:
        await owner.close()
    assert admissions is not None
    # One admission record per admitted call, each its own request's; fewer transactions than
    # calls: they were admitted together.
    assert admissions["records"] == admissions["callers"] == 30
    assert admissions["transactions"] < 30


async def test_with_the_database_away_a_call_is_503_and_is_served_again_when_it_returns(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A gateway of its own on a database of its own, which stops taking connections after the
    licensee has its token: the call is refused with 503 in OpenAI's shape (nothing forwarded,
    nothing reserved), and once the database is back the same token is metered again."""
    own = await asyncio.to_thread(make_database, server_url)
    process = GatewayProcess({}, tmp_path_factory.mktemp("no-database") / "gateway.log")
    process.configure(gateway_env(own, issuer=process.base_url))
    process.configure({"LIGHTHOUSE_SERVING_URL": f"http://127.0.0.1:{free_port()}",
                       "LIGHTHOUSE_SERVING_RETRIES": "0"})  # fmt: skip
    process.start()
    admin = await asyncpg.connect(server_url)
    try:
        licensed = await licensee_with_licence(own)
        client = sdk(process, await access_token(process, licensed))
        await _refuse_connections(admin, own.name)
        with pytest.raises(openai.InternalServerError) as refused:
            await client.chat.completions.create(model=MODEL, messages=hello())
        assert refused.value.status_code == 503
        assert "nothing was done" in refused.value.message
        assert refused.value.response.headers["retry-after"] == "5"
        # The graph says the same in its own shape.
        async with httpx.AsyncClient(base_url=process.base_url) as http:
            graph = await http.post(
                "/graphql",
                json={"query": "{ licences { code } }"},
                headers={"authorization": f"Bearer {client.api_key}"},
            )
        assert graph.status_code == 503
        assert graph.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        await admin.execute(f'ALTER DATABASE "{own.name}" ALLOW_CONNECTIONS true')
        # Back: admitted again (then 503 from the absent model, released, nothing charged).
        with pytest.raises(openai.InternalServerError) as again:
            await client.chat.completions.create(model=MODEL, messages=hello())
        assert "model is not available" in again.value.message
        state = await ledger(own, licensed.licence)
        assert charged(state) == NOTHING_CHARGED and state["records_not_charged"] == 1
    finally:
        await admin.execute(f'ALTER DATABASE "{own.name}" ALLOW_CONNECTIONS true')
        await admin.close()
        process.stop()
        await _drop_database(server_url, own.name)


async def test_connections_dropped_at_any_moment_are_answered_503_and_never_charged(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The database drops the gateway's connections at a random moment of each call (before it
    arrives, while its token is checked, while it is admitted, while it is settled): every call
    is answered 503 with Retry-After in OpenAI's shape, never 500, and nothing is charged (a
    reservation whose settlement met the cut is given back when its lease runs out). A
    connection cut under a statement can leave asyncpg's client in a state it reports as its
    own internal error; that too means the database cannot be reached."""
    own = await asyncio.to_thread(make_database, server_url)
    process = GatewayProcess({}, tmp_path_factory.mktemp("dropped") / "gateway.log")
    process.configure(gateway_env(own, issuer=process.base_url))
    process.configure({"LIGHTHOUSE_SERVING_URL": f"http://127.0.0.1:{free_port()}",
                       "LIGHTHOUSE_SERVING_RETRIES": "0",
                       "LIGHTHOUSE_METERING_LEASE_SECONDS": "10",
                       "LIGHTHOUSE_METERING_SWEEP_SECONDS": "1"})  # fmt: skip
    process.start()
    admin = await asyncpg.connect(server_url)
    rng = random.Random(20261201)
    answers: list[tuple[int, str | None]] = []
    try:
        licensed = await licensee_with_licence(own)
        client = sdk(process, await access_token(process, licensed))

        async def call() -> None:
            with pytest.raises(openai.APIStatusError) as refused:
                await client.chat.completions.create(model=MODEL, messages=hello())
            answers.append(
                (refused.value.status_code, refused.value.response.headers.get("retry-after"))
            )

        async def drop(after: float) -> None:
            await asyncio.sleep(after)
            await admin.execute(f'ALTER DATABASE "{own.name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                own.name,
            )

        for _ in range(30):
            await asyncio.gather(call(), drop(rng.uniform(0, 0.05)))
            await admin.execute(f'ALTER DATABASE "{own.name}" ALLOW_CONNECTIONS true')
        assert answers == [(503, "5")] * 30
        # A call whose settlement met the cut leaves its reservation to the lease, which gives
        # it back; nothing was ever used.
        for _ in range(100):
            state = await ledger(own, licensed.licence)
            if state["reserved_requests"] == 0:
                break
            await asyncio.sleep(0.25)
        assert charged(state) == NOTHING_CHARGED
    finally:
        await admin.execute(f'ALTER DATABASE "{own.name}" ALLOW_CONNECTIONS true')
        await admin.close()
        process.stop()
        await _drop_database(server_url, own.name)


async def _refuse_connections(admin: asyncpg.Connection, name: str) -> None:
    """Database ``name`` takes no new connection and its open ones are gone (terminating a
    backend only signals it: wait until it has left)."""
    await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
    )
    for _ in range(200):
        if not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the backends of {name} did not leave in 10 s")
