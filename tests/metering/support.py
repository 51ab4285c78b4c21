"""Licensees for the metered-inference tests: a company with one licence and an OAuth client,
made as the city makes them (the licensing repository as a licensing administrator, the client
through the registration service), and the standard clients a licensee's developer uses: an
OAuth client library for the token, the OpenAI SDK for the calls."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
import openai
from authlib.deprecate import AuthlibDeprecationWarning
from PIL import Image

from api.app import create_app
from api.auth.clients import ClientRegistration, ClientRegistry
from api.auth.principal import Principal, PrincipalKind
from api.db.pool import create_pool
from api.db.unit_of_work import UnitOfWork
from api.domain.licensing import Licence, LicenceTerms, QuotaPeriod
from api.repositories.licensing import Contact, LicensingRepository
from api.repositories.oauth import OAuthRepository
from api.services.metering.chat import GENERATION_PROMPT_TOKENS
from api.settings import (
    DatabaseSettings,
    Environment,
    MeteringSettings,
    OAuthSettings,
    ServingSettings,
    Settings,
    VisionSettings,
    load_settings,
)
from tests.support import REPOSITORY, DatabaseUnderTest, InProcessGateway, free_port

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

T = TypeVar("T")
MODEL = "lighthouse-tiny-vlm"
PURPOSE = "parking-occupancy"
ADMIN = Principal(
    subject="licensing-officer", kind=PrincipalKind.STAFF, scopes=frozenset({"licensing:admin"})
)


class Gateway(Protocol):
    """A running gateway: a process of its own (``GatewayProcess``) or one in the test's loop
    (``InProcessGateway``)."""

    base_url: str


@dataclass(frozen=True)
class Licensed:
    licence: Licence
    client_id: str
    secret: str


@asynccontextmanager
async def gateway_in_loop(
    database: DatabaseUnderTest, serving_url: str, scratch: Path
) -> AsyncIterator[InProcessGateway]:
    """A gateway served in the test's own loop, its serving tier at ``serving_url`` (tried
    once: no retries), its frames under ``scratch``."""
    port = free_port()
    settings = load_settings(
        environment=Environment.TEST,
        database=DatabaseSettings(
            url=database.app_url, owner_url=database.owner_url, migrate_on_start=False
        ),
        oauth=OAuthSettings(issuer=f"http://127.0.0.1:{port}", refusals_per_minute=100_000),
        serving=ServingSettings(url=serving_url, retries=0, secret_file=None),
        vision=VisionSettings(frames_dir=scratch / "frames"),
    )
    async with InProcessGateway(create_app(settings), port) as gateway:
        yield gateway


async def as_admin(
    database: DatabaseUnderTest, step: Callable[[LicensingRepository], Awaitable[T]]
) -> T:
    """``step`` in a transaction of a licensing administrator (the application role, RLS on)."""
    settings = Settings(
        database=DatabaseSettings(url=database.app_url, pool_min_size=1, pool_max_size=1)
    )
    pool = await create_pool(database.app_url, settings)
    try:
        async with UnitOfWork(pool, ADMIN.database_settings()) as uow:
            return await step(LicensingRepository(uow))
    finally:
        await pool.close()


def licence_terms(licensee_id: int, *, code: str, **terms: Any) -> LicenceTerms:
    """Generous terms, but for ``terms``."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "licensee_id": licensee_id,
        "code": code,
        "models": [MODEL],
        "purpose": PURPOSE,
        "purpose_description": "parking occupancy analytics",
        "valid_from": now - timedelta(days=1),
        "valid_until": now + timedelta(days=30),
        "quota_period": QuotaPeriod.MONTH,
        "quota_requests": 10_000,
        "quota_input_tokens": 10**9,
        "quota_output_tokens": 10**9,
        "quota_images": 10_000,
        "requests_per_minute": 10_000,
        "tokens_per_minute": 10**9,
        "max_concurrent": 10_000,
        "max_tokens": 64,
        "max_images": 1,
        "max_image_bytes": 256 * 1024,
    } | terms
    return LicenceTerms(**values)


async def new_licensee_and_licence(
    repository: LicensingRepository, number: int, **terms: Any
) -> Licence:
    """A company of its own (named after ``number``) and one licence: generous terms, but for
    ``terms``."""
    licensee = await repository.create_licensee(
        f"company-{number}", f"Company {number}", f"{number % 10**8:08d}",
        [Contact("Developer", "dev@example.com")], ADMIN.subject,
    )  # fmt: skip
    terms = {"code": f"LIC-{number}"} | terms  # a test may ask for a code of its own
    return await repository.create_licence(licence_terms(licensee.id, **terms), ADMIN.subject)


async def another_licence(database: DatabaseUnderTest, licensed: Licensed, **terms: Any) -> Licence:
    """One more licence for ``licensed``'s company (generous, but for ``terms``)."""
    code = f"{licensed.licence.code}-{uuid.uuid4().hex[:6].upper()}"
    new = licence_terms(licensed.licence.licensee_id, code=code, **terms)
    return await as_admin(database, lambda r: r.create_licence(new, ADMIN.subject))


async def licensee_with_licence(database: DatabaseUnderTest, **terms: Any) -> Licensed:
    """A company of its own, one licence (generous, but for ``terms``) and one OAuth client."""
    number = uuid.uuid4().int % 10**8

    async def create(repository: LicensingRepository) -> Licence:
        return await new_licensee_and_licence(repository, number, **terms)

    licence = await as_admin(database, create)
    owner = await asyncpg.connect(database.owner_url, server_settings={"search_path": "lighthouse"})
    try:
        registered = await ClientRegistry(OAuthRepository(owner)).register(
            ClientRegistration(
                client_id=f"licensee-{number}",
                name=f"Company {number}'s app",
                kind=PrincipalKind.LICENSEE,
                scopes=["inference:invoke", "usage:read"],
                licensee_id=licence.licensee_id,
            )
        )
    finally:
        await owner.close()
    return Licensed(licence, registered.client_id, registered.secret)


async def access_token(
    gateway: Gateway, licensed: Licensed, scope: str = "inference:invoke usage:read"
) -> str:
    """A token by client credentials, as a licensee's developer gets one (authlib)."""
    async with AsyncOAuth2Client(
        licensed.client_id, licensed.secret, token_endpoint_auth_method="client_secret_basic"
    ) as oauth:
        token = await oauth.fetch_token(
            gateway.base_url + "/oauth/token", grant_type="client_credentials", scope=scope
        )
    return str(token["access_token"])


def sdk(gateway: Gateway, token: str, **options: Any) -> openai.AsyncOpenAI:
    """The OpenAI SDK pointed at the gateway, without its own retries (the tests count calls)."""
    return openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1",
        api_key=token,
        max_retries=0,
        # Seconds as a number: the SDK builds its own HTTP client (openai 3.x on httpx2), and a
        # timeout object of another HTTP library is refused.
        timeout=120.0,
        **options,
    )


async def ledger(database: DatabaseUnderTest, licence: Licence) -> dict[str, int]:
    """The licence's ledger and usage records, read as the owner: what the bill would say."""
    owner = await asyncpg.connect(database.owner_url)
    try:
        period = await owner.fetchrow(
            "SELECT coalesce(sum(used_requests), 0) AS used_requests,"
            " coalesce(sum(used_input_tokens), 0) AS used_input_tokens,"
            " coalesce(sum(used_output_tokens), 0) AS used_output_tokens,"
            " coalesce(sum(used_images), 0) AS used_images,"
            " coalesce(sum(reserved_requests), 0) AS reserved_requests"
            " FROM lighthouse.quota_period WHERE licence_id = $1",
            licence.id,
        )
        records = await owner.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'OK') AS ok,"
            " count(*) FILTER (WHERE status <> 'OK') AS not_charged,"
            " coalesce(sum(input_tokens), 0) AS input_tokens,"
            " coalesce(sum(output_tokens), 0) AS output_tokens,"
            " coalesce(sum(images), 0) AS images"
            " FROM lighthouse.usage_record WHERE licence_id = $1",
            licence.id,
        )
    finally:
        await owner.close()
    assert period is not None and records is not None
    return {
        **{k: int(v) for k, v in period.items()},
        **{f"records_{k}": int(v) for k, v in records.items()},
    }


async def held(database: DatabaseUnderTest, licence: Licence) -> dict[str, int]:
    """What the licence still holds for calls under way: reservations, the period's reserved
    requests and the calls in flight (all zero once every call has ended)."""
    owner = await asyncpg.connect(database.owner_url)
    try:
        row = await owner.fetchrow(
            "SELECT (SELECT count(*) FROM lighthouse.quota_reservation WHERE licence_id = $1)"
            " AS reservations, (SELECT coalesce(sum(reserved_requests), 0)"
            " FROM lighthouse.quota_period WHERE licence_id = $1) AS reserved_requests,"
            " (SELECT coalesce(sum(in_flight), 0) FROM lighthouse.licence_load"
            " WHERE licence_id = $1) AS in_flight",
            licence.id,
        )
    finally:
        await owner.close()
    assert row is not None
    return {k: int(v) for k, v in row.items()}


NOTHING_HELD = {"reservations": 0, "reserved_requests": 0, "in_flight": 0}


async def records(database: DatabaseUnderTest, licence: Licence) -> list[tuple[str, int, int, int]]:
    """The licence's usage records, oldest first: (status, input tokens, output tokens, images)."""
    owner = await asyncpg.connect(database.owner_url)
    try:
        rows = await owner.fetch(
            "SELECT status, input_tokens, output_tokens, images FROM lighthouse.usage_record"
            " WHERE licence_id = $1 ORDER BY finished_at, request_id",
            licence.id,
        )
    finally:
        await owner.close()
    return [(r["status"], r["input_tokens"], r["output_tokens"], r["images"]) for r in rows]


async def settled(
    database: DatabaseUnderTest, licence: Licence, count: int, seconds: float = 15
) -> list[tuple[str, int, int, int]]:
    """The licence's usage records once there are ``count`` of them and nothing is held any
    more (a call its client left ends a moment after the client has gone)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await records(database, licence)
        if len(found) >= count and await held(database, licence) == NOTHING_HELD:
            return found
        if asyncio.get_running_loop().time() > deadline:
            state = await held(database, licence)
            raise AssertionError(f"after {seconds} s: records {found}, still held {state}")
        await asyncio.sleep(0.05)


def png_uri(size: tuple[int, int] = (64, 48), noise: bool = False) -> str:
    image = Image.new("RGB", size, (200, 40, 40))
    if noise:  # incompressible: the PNG is as large as its pixels
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def hello() -> list[dict[str, object]]:
    return [{"role": "user", "content": "How many cars are parked here?"}]


# What hello() reserves for its prompt: every text byte, the template's tokens for its message,
# and the answer's generation prompt.
HELLO_INPUT = (
    len(str(hello()[0]["content"]).encode())
    + MeteringSettings().message_tokens
    + GENERATION_PROMPT_TOKENS
)

# A ledger row (``ledger``'s keys) of a licence charged nothing.
NOTHING_CHARGED = {
    "used_requests": 0,
    "used_input_tokens": 0,
    "used_output_tokens": 0,
    "used_images": 0,
    "reserved_requests": 0,
}


def charged(state: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in state.items() if k in NOTHING_CHARGED}


def readme_block(holding: str) -> str:
    """The one Python block of README.md that holds ``holding``."""
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    (block,) = [block for block in blocks if holding in block]
    return block
