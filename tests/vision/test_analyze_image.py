"""``analyzeImage`` runs as a long request: checked in the request's transaction, the model asked
with no transaction open, the outcome recorded in the next one; one audit record says it all.
(The model is the fake tier, answering late; the real one is in test_pipeline.py.)"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from api.app import create_app
from api.settings import (
    ServingSettings,
    VisionSettings,
)
from tests.support import (
    DatabaseUnderTest,
    InProcessGateway,
    free_port,
    idle_in_transaction,
    in_process_settings,
)
from tests.tokens import TokenFactory
from tests.vision.conftest import graphql_upload
from tests.vision.fake_serving import FakeServing, Said, Script
from tests.vision.images import photo

# Not `db` (pyproject.toml's rule): what is checked is when the gateway holds a connection.

CALLS = 3
MODEL_SECONDS = 2.0
ANALYZE = """
mutation Analyze($file: Upload!) {
  analyzeImage(file: $file) {
    __typename
    ... on ImageAnalysis { outcome findings { category } }
    ... on Error { code message }
  }
}
"""


@pytest.fixture
async def fake() -> AsyncIterator[FakeServing]:
    async with FakeServing() as serving:
        yield serving


@pytest.fixture
async def analysing(
    database: DatabaseUnderTest, fake: FakeServing, tmp_path: Path
) -> AsyncIterator[tuple[str, TokenFactory]]:
    """A gateway whose serving tier is the fake one."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = in_process_settings(
        database,
        issuer,
        pool_max_size=CALLS + 1,
        serving=ServingSettings(url=fake.url, secret_file=None, retries=0, timeout_seconds=30),
        vision=VisionSettings(frames_dir=tmp_path / "frames"),
    )
    async with InProcessGateway(create_app(settings), port) as gateway:
        yield gateway.base_url, TokenFactory(database.owner_url, issuer)


def token_id(token: str) -> str:
    payload = token.split(".")[1]
    jti: str = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
    return jti


async def test_no_connection_is_held_while_the_model_answers(
    analysing: tuple[str, TokenFactory],
    fake: FakeServing,
    owner: asyncpg.Connection,
    database: DatabaseUnderTest,
) -> None:
    base_url, tokens = analysing
    fake.script = Script(findings=[Said("POTHOLE")], delay_seconds=MODEL_SECONDS)
    token = tokens.named("pwb-dispatcher")
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        calls = [
            asyncio.create_task(graphql_upload(http, token, ANALYZE, {}, photo(40 + n)))
            for n in range(CALLS)
        ]
        deadline = time.monotonic() + 20
        while len(fake.requests) < CALLS:  # every call is waiting on the model
            assert time.monotonic() < deadline, "the calls did not reach the model"
            await asyncio.sleep(0.05)
        held = await idle_in_transaction(owner, database)
        responses = await asyncio.gather(*calls)
    assert held == 0, f"{held} connections idle in a transaction while the model answered"
    for response in responses:
        assert response.status_code == 200, response.text
        result = response.json()["data"]["analyzeImage"]
        assert result["__typename"] == "ImageAnalysis", result
        assert (result["outcome"], result["findings"]) == ("FINDINGS", [{"category": "POTHOLE"}])
    # One record per call (what the check decided, and the outcome), not one per transaction.
    records = await owner.fetch(
        "SELECT request_id, decision, policy_ids, payload FROM audit_record"
        " WHERE request_id = ANY($1::text[])",
        [r.headers["x-request-id"] for r in responses],
    )
    assert len(records) == CALLS
    for record in records:
        assert record["decision"] == "ALLOW" and record["policy_ids"]
        assert orjson.loads(record["payload"])["details"]["outcome"] == "FINDINGS"


async def test_a_token_revoked_while_the_model_answers_ends_the_request(
    analysing: tuple[str, TokenFactory], fake: FakeServing, owner: asyncpg.Connection
) -> None:
    """The next transaction checks the token again: revoked meanwhile, nothing is recorded as
    the caller's, and the caller is told."""
    base_url, tokens = analysing
    fake.script = Script(findings=[Said("POTHOLE")], delay_seconds=MODEL_SECONDS)
    token = tokens.custom(
        subject="revoked-mid-analysis",
        kind="staff",
        bureau="PUBLIC_WORKS",
        roles=["dispatcher"],
        scopes=["incidents:read", "incidents:write"],
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        call = asyncio.create_task(graphql_upload(http, token, ANALYZE, {}, photo(50)))
        deadline = time.monotonic() + 20
        while not fake.requests:
            assert time.monotonic() < deadline, "the call did not reach the model"
            await asyncio.sleep(0.05)
        await owner.execute(
            "INSERT INTO revoked_token (jti, client_id, expires_at)"
            " VALUES ($1, 'lighthouse-tests', now() + interval '1 hour')",
            token_id(token),
        )
        response = await call
    assert response.status_code == 200, response.text
    errors = response.json()["errors"]
    assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED", errors
    assert "revoked" in errors[0]["message"]
