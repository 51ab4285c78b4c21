"""Metered inference through ``/v1``, called with the OpenAI SDK by a licensee's client holding a
token from the city's authorization server (authlib).

The refusals here are decided before anything is forwarded and need no model; the tests that
reach the model are in test_v1_with_the_model.py.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import openai
import pytest

from api.services.metering.chat import GENERATION_PROMPT_TOKENS
from api.settings import MeteringSettings
from tests.conftest import _drop_database, gateway_env, make_database
from tests.metering.support import (
    MODEL,
    NOTHING_CHARGED,
    Licensed,
    access_token,
    another_licence,
    as_admin,
    charged,
    hello,
    ledger,
    licensee_with_licence,
    png_uri,
    readme_block,
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
    # models.retrieve: one the licence covers, as the list shows it; another's is not found.
    listed = {m.id: m for m in (await client.models.list()).data}
    assert await client.models.retrieve(MODEL) == listed[MODEL]
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("another-model")
    assert missing.value.code == "model_not_found"
    assert missing.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        await sdk(gateway, "not-a-token").models.retrieve(MODEL)


@pytest.mark.db  # which licences may be used now is decided in SQL, by the database's clock
async def test_only_a_licence_that_may_be_used_now_lists_its_models(
    gateway: GatewayProcess, database: DatabaseUnderTest
) -> None:
    """A licence suspended, revoked, expired or not yet valid, or of a company the city has
    suspended, lists no model, as a call on it is refused; a company's other licence that may
    be used lists its own, and a licence resumed lists its models again."""
    now = datetime.now(UTC)
    suspended = await licensee_with_licence(database)
    await as_admin(database, lambda r: r.suspend(suspended.licence.id, "unpaid invoice"))
    revoked = await licensee_with_licence(database)
    await as_admin(database, lambda r: r.revoke(revoked.licence.id))
    expired = await licensee_with_licence(
        database, valid_from=now - timedelta(days=60), valid_until=now - timedelta(days=1)
    )
    early = await licensee_with_licence(database, valid_from=now + timedelta(days=1))
    inactive = await licensee_with_licence(database)
    owner = await asyncpg.connect(database.owner_url)
    try:
        await owner.execute(
            "UPDATE lighthouse.licensee SET status = 'SUSPENDED' WHERE id = $1",
            inactive.licence.licensee_id,
        )
    finally:
        await owner.close()
    for licensed, code in (
        (suspended, "suspended"), (revoked, "revoked"), (expired, "expired"),
        (early, "not_yet_valid"), (inactive, "licensee_inactive"),
    ):  # fmt: skip
        client = sdk(gateway, await access_token(gateway, licensed))
        assert (await client.models.list()).data == [], code
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve(MODEL)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await client.chat.completions.create(model=MODEL, messages=hello())
        assert refused.value.code == code
    both = await licensee_with_licence(database)
    other = await another_licence(database, both, models=["city-vlm-7b"])
    await as_admin(database, lambda r: r.suspend(other.id, "under review"))
    client = sdk(gateway, await access_token(gateway, both))
    assert [m.id for m in (await client.models.list()).data] == [MODEL]
    await as_admin(database, lambda r: r.resume(other.id))
    assert sorted(m.id for m in (await client.models.list()).data) == ["city-vlm-7b", MODEL]


async def test_the_readmes_token_keeps_the_sdk_working_past_a_tokens_end(
    gateway: GatewayProcess, database: DatabaseUnderTest
) -> None:
    """The README's ``CityToken`` as the SDK's API key (the SDK calls it before each request):
    one token while it lasts, a new one a minute before it ends, and no call refused."""
    licensed = await licensee_with_licence(database)
    namespace: dict[str, Any] = {}
    exec(readme_block("class CityToken"), namespace)  # the README's code, as it stands
    token = namespace["CityToken"](gateway.base_url, licensed.client_id, licensed.secret)
    client = openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=lambda: asyncio.to_thread(token), max_retries=0
    )
    assert [m.id for m in (await client.models.list()).data] == [MODEL]
    first, ends = token.token, token.expires
    assert ends - time.time() > 14 * 60  # the gateway's tokens last 15 minutes
    assert [m.id for m in (await client.models.list()).data] == [MODEL]
    assert token.token == first  # kept while it lasts
    token.expires = time.time() + 59  # (its end, a minute away, without waiting for it)
    assert [m.id for m in (await client.models.list()).data] == [MODEL]
    assert token.token != first and token.expires > ends
    # The old token, revoked, would be refused: the SDK's requests carried the new one.
    async with httpx.AsyncClient(base_url=gateway.base_url) as http:
        revoked = await http.post(
            "/oauth/revoke", data={"token": first}, auth=(licensed.client_id, licensed.secret)
        )
    assert revoked.status_code == 200
    assert [m.id for m in (await client.models.list()).data] == [MODEL]


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


def _user(*parts: dict[str, object]) -> list[dict[str, object]]:
    return [{"role": "user", "content": list(parts)}]


def _image(url: str, **more: object) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url, **more}}


def nested_schema(levels: int) -> dict[str, object]:
    """A JSON schema of ``levels`` levels: objects inside objects, a string innermost."""
    schema: dict[str, object] = {"type": "string"}
    for _ in range(levels - 1):
        schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
    return schema


def schema_format(schema: dict[str, object], name: str = "answer") -> dict[str, object]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


NOT_PNG = "data:image/png;base64," + base64.b64encode(b"GIF89a, not a PNG").decode()
WIDE = {"type": "object", "properties": {f"p{n}": {"type": "string"} for n in range(5001)}}


@pytest.mark.parametrize(
    ("request_args", "param"),
    [
        ({"messages": _user(_image(png_uri(), detail="https://example.com/high"))},
         "messages[0].content[0].image_url.detail"),
        ({"messages": _user(_image(png_uri(), fetch=True))},
         "messages[0].content[0].image_url.fetch"),
        ({"messages": _user(_image("file:///etc/passwd"))}, "messages[0].content[0].image_url.url"),
        ({"messages": _user(_image("data:text/plain;base64,aGk="))},
         "messages[0].content[0].image_url.url"),
        ({"messages": _user(_image(png_uri() + "%%"))},
         "messages[0].content[0].image_url.url"),
        ({"messages": _user(_image(NOT_PNG))}, "messages[0].content[0].image_url.url"),
        ({"messages": _user({"type": "input_audio", "input_audio": {}})},
         "messages[0].content[0].type"),
        ({"messages": _user({"type": "text", "text": "hi", "cache_control": {}})},
         "messages[0].content[0].cache_control"),
        ({"messages": _user({"type": "text", "text": 5})}, "messages[0].content[0].text"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "hi", "name": "not a name!"}]},
         "messages[0].name"),
        ({"messages": [{"role": "user", "content": "hi", "tool_calls": []}]},
         "messages[0].tool_calls"),
        ({"messages": [{"role": "user", "content": "hi"},
                       {"role": "system", "content": [_image(png_uri())]}]},
         "messages[1].content[0].type"),
        ({"temperature": 3}, "temperature"),
        ({"seed": "lucky"}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": schema_format(nested_schema(200))},
         "response_format.json_schema.schema"),
        ({"response_format": schema_format(nested_schema(11))},
         "response_format.json_schema.schema"),
        ({"response_format": schema_format(WIDE)}, "response_format.json_schema.schema"),
        ({"response_format": schema_format({"type": "object", "default": nested_schema(40)})},
         "response_format.json_schema.schema"),
        ({"response_format": schema_format({"type": "string"}, name="an answer")},
         "response_format.json_schema.name"),
    ],
    ids=[
        "detail-a-url", "image-field-unknown", "image-a-file-url", "data-uri-not-an-image",
        "data-uri-not-base64", "data-uri-not-its-type", "part-type-unknown", "part-field-unknown",
        "text-not-text", "role-unknown", "content-missing", "content-empty", "name-invalid",
        "message-field-unknown", "image-in-a-system-message", "temperature-out-of-range",
        "seed-not-a-number", "stop-too-many", "format-unknown", "schema-200-levels",
        "schema-11-levels", "schema-5001-properties", "schema-value-too-deep",
        "schema-name-invalid",
    ],
)  # fmt: skip
async def test_what_the_tier_would_fail_on_is_refused_naming_the_field(
    gateway: GatewayProcess,
    database: DatabaseUnderTest,
    licensed: Licensed,
    request_args: dict[str, object],
    param: str,
) -> None:
    """Every part of a message and every parameter forwarded is checked before anything is
    reserved: 400 in OpenAI's shape, ``param`` naming the field, nothing charged or held. (A
    call that passed would be admitted, and answered 503 here: this gateway's tier is down.)"""
    client = sdk(gateway, await access_token(gateway, licensed))
    arguments: dict[str, object] = {"model": MODEL, "messages": hello()} | request_args
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(**arguments)  # type: ignore[call-overload]
    assert refused.value.status_code == 400
    assert refused.value.param == param
    assert refused.value.type == "invalid_request_error" and refused.value.message
    state = await ledger(database, licensed.licence)
    assert charged(state) == NOTHING_CHARGED and state["records_not_charged"] == 0


async def test_messages_and_formats_within_the_rules_are_forwarded(
    without_model: GatewayProcess, database: DatabaseUnderTest
) -> None:
    """Each kind of part, detail and role the rules allow, and a schema at OpenAI's bounds (10
    levels, 5,000 properties), are admitted (then 503: the tier is down; nothing charged)."""
    licensed = await licensee_with_licence(database, max_images=3)
    client = sdk(without_model, await access_token(without_model, licensed))
    messages = [
        {"role": "system", "content": "Count cars."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in JSON."}]},
        {"role": "user", "name": "camera-7", "content": [
            {"type": "text", "text": "Here:"},
            *(_image(png_uri(), detail=detail) for detail in ("auto", "low", "high")),
        ]},
        {"role": "assistant", "content": [{"type": "text", "text": "{}"}]},
        {"role": "user", "content": "Again."},
    ]  # fmt: skip
    bounded = [
        nested_schema(10),
        {"type": "object", "properties": {f"p{n}": {"type": "string"} for n in range(5000)}},
    ]
    for response_format in [None, *(schema_format(schema) for schema in bounded)]:
        extra = {} if response_format is None else {"response_format": response_format}
        with pytest.raises(openai.InternalServerError) as unavailable:
            await client.chat.completions.create(
                model=MODEL, messages=messages, temperature=0.2, stop=["\n\n"], seed=7, **extra
            )  # type: ignore[call-overload]
        assert unavailable.value.status_code == 503
        assert "model is not available" in unavailable.value.message
    state = await ledger(database, licensed.licence)
    assert charged(state) == NOTHING_CHARGED and state["records_not_charged"] == 3


async def test_suspended_expired_and_revoked_licences_are_refused(
    gateway: GatewayProcess, database: DatabaseUnderTest
) -> None:
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

    async def refusals() -> float:
        async with httpx.AsyncClient(base_url=gateway.base_url) as http:
            text = (await http.get("/metrics")).text
        series = 'lighthouse_metering_refusals_total{reason="requests"} '
        return float(text.split(series, 1)[1].split()[0]) if series in text else 0.0

    before = await refusals()
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model=MODEL, messages=hello())
    assert refused.value.code == "requests"
    assert int(refused.value.response.headers["Retry-After"]) > 0
    assert await refusals() == before + 1  # counted for the city's dashboards, by reason


PARKED: Any = [{"role": "user", "content": [
    {"type": "text", "text": "What is parked here?"}, _image(png_uri())]}]  # fmt: skip
# What PARKED with max_tokens=8 wants of each quota: one request; its text's bytes, the template's
# tokens for its message, an image's and the generation prompt's; 8 answer tokens; one image.
WANTED = {
    "quota_requests": 1,
    "quota_input_tokens": len(b"What is parked here?") + MeteringSettings().message_tokens
    + MeteringSettings().image_tokens + GENERATION_PROMPT_TOKENS,
    "quota_output_tokens": 8,
    "quota_images": 1,
}  # fmt: skip


@pytest.mark.db  # the ledger's function decides
@pytest.mark.parametrize("quota", sorted(WANTED))
async def test_a_quota_of_exactly_what_a_call_wants_admits_it_and_one_less_refuses_it(
    without_model: GatewayProcess, database: DatabaseUnderTest, quota: str
) -> None:
    """Admitted is 503 here (the tier is down, the reservation given back); refused is 429
    naming the quota."""
    fits = await licensee_with_licence(database, **{quota: WANTED[quota]})
    client = sdk(without_model, await access_token(without_model, fits))
    with pytest.raises(openai.InternalServerError) as admitted:
        await client.chat.completions.create(model=MODEL, messages=PARKED, max_tokens=8)
    assert admitted.value.status_code == 503
    short = await licensee_with_licence(database, **{quota: WANTED[quota] - 1})
    client = sdk(without_model, await access_token(without_model, short))
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model=MODEL, messages=PARKED, max_tokens=8)
    assert refused.value.code == quota.removeprefix("quota_")
    for licensed in (fits, short):
        assert charged(await ledger(database, licensed.licence)) == NOTHING_CHARGED


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
