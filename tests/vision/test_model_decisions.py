"""Which model version the vision workers use is a decision in the registry: a model officer
promotes a version (by command or through the graph), the running workers take it up for their
next frames without a restart, each frame analysed once; every decision is kept, audited, and
refused to anyone else or for a model the serving tier does not serve."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.graph.domains import DOMAINS
from api.settings import ServingSettings, Settings
from api.vision.worker import vision_worker
from tests.support import (
    DatabaseUnderTest,
    GraphQLClient,
    InProcessGateway,
    free_port,
    in_process_settings,
)
from tests.tokens import TokenFactory
from tests.vision.conftest import CameraFactory
from tests.vision.fake_serving import FakeServing, Said
from tests.vision.test_worker import send, until

pytestmark = pytest.mark.db

REPOSITORY = Path(__file__).resolve().parents[2]
FIRST, SECOND = "lighthouse-tiny-vlm", "lighthouse-tiny-vlm-b"

PROMOTE = """
mutation Promote($input: PromoteModelVersionInput!) {
  promoteModelVersion(input: $input) {
    __typename
    ... on ModelPromoted { decision { id model version role reason decidedBy } }
    ... on InvalidInput { field message }
    ... on Error { code message }
  }
}
"""


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeServing]:
    async with FakeServing(FIRST, SECOND) as serving:
        yield serving


async def models_cli(
    database: DatabaseUnderTest, serving_url: str, *args: str
) -> tuple[int, str, str]:
    env = os.environ | {
        "LIGHTHOUSE_DATABASE_URL": database.app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": database.owner_url,
        "LIGHTHOUSE_ENVIRONMENT": "test",
        "LIGHTHOUSE_SERVING_URL": serving_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "api.cli", "models", *args, cwd=REPOSITORY, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def analysed_by(owner: asyncpg.Connection) -> dict[str, list[tuple[str, str]]]:
    rows = await owner.fetch(
        "SELECT encode(frame_sha256, 'hex') AS sha, model, model_version FROM frame_analysis"
        " ORDER BY id"
    )
    found: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        found.setdefault(row["sha"], []).append((row["model"], row["model_version"]))
    return found


async def test_running_workers_take_up_a_promoted_version_for_their_next_frames(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    fake: FakeServing,
    settings_for: Callable[..., Settings],
    database: DatabaseUnderTest,
) -> None:
    camera = await cameras("POLICE")
    fake.script.findings = [Said("POTHOLE", "hole in lane 2", 0.9)]
    settings = settings_for(fake.url)
    configured = (settings.serving.model, settings.serving.model_version)
    async with vision_worker(settings) as worker:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop=stop))
        try:
            first = await send(http, tokens, camera, 1)

            async def done(sha: str) -> bool:
                return sha in await analysed_by(owner)

            await until(lambda: done(first), "the first frame analysed")
            code, _, said = await models_cli(
                database, fake.url, "promote", SECOND, "2026.12", "--reason", "better recall"
            )
            assert code == 0 and "is in production" in said, said
            second = await send(http, tokens, camera, 2)
            await until(lambda: done(second), "the second frame analysed")
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
    # One worker, never restarted: each frame analysed once, by the version in force then.
    assert await analysed_by(owner) == {first: [configured], second: [(SECOND, "2026.12")]}
    assert [request["model"] for request in fake.requests] == [FIRST, SECOND]
    registry = await owner.fetch("SELECT name, version FROM vision_model ORDER BY first_used_at")
    assert (SECOND, "2026.12") in [(r["name"], r["version"]) for r in registry]

    # The decision, kept with who, when and why, and audited in its transaction.
    code, out, said = await models_cli(database, fake.url, "decisions", "--json")
    assert code == 0, said
    (decision,) = json.loads(out)
    assert decision["model"] == SECOND and decision["reason"] == "better recall"
    assert decision["decided_by"].startswith("cli:") and decision["role"] == "PRODUCTION"
    audited = await owner.fetchval(
        "SELECT count(*) FROM audit_record WHERE $1 = ANY(resource_ids)",
        f"ModelDecision:{decision['id']}",
    )
    assert audited >= 1
    # Rolling back is deciding again; the record keeps both.
    code, _, said = await models_cli(
        database, fake.url, "promote", FIRST, configured[1], "--reason", "roll back: rejections"
    )
    assert code == 0, said
    assert await owner.fetchval("SELECT count(*) FROM model_decision") == 2


@pytest_asyncio.fixture
async def officers_gateway(
    database: DatabaseUnderTest, fake: FakeServing
) -> AsyncIterator[tuple[str, TokenFactory]]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    serving = ServingSettings(url=fake.url, retries=0, timeout_seconds=10)
    settings = in_process_settings(database, issuer, pool_max_size=4, serving=serving)
    async with InProcessGateway(create_app(settings, list(DOMAINS.values())), port) as gateway:
        yield gateway.base_url, TokenFactory(database.owner_url, issuer)


async def promote(client: GraphQLClient, **values: Any) -> dict[str, Any]:
    data = await client.data(PROMOTE, {"input": {"model": SECOND, "version": "2", **values}})
    result: dict[str, Any] = data["promoteModelVersion"]
    return result


async def test_only_a_model_officer_promotes_and_only_what_the_tier_serves(
    officers_gateway: tuple[str, TokenFactory],
    fake: FakeServing,
    owner: asyncpg.Connection,
    clean: None,
) -> None:
    base_url, tokens = officers_gateway
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        officer = GraphQLClient(http, tokens.named("rdec-evaluator"))
        done = await promote(officer, reason="evaluated on the 2026 pothole set")
        assert done["__typename"] == "ModelPromoted", done
        assert done["decision"]["decidedBy"] == "rdec-evaluator"
        in_force = await officer.data(
            "{ productionModel { model version } modelDecisions { id reason } }"
        )
        assert in_force["productionModel"] == {"model": SECOND, "version": "2"}
        assert [d["reason"] for d in in_force["modelDecisions"]] == [
            "evaluated on the 2026 pothole set"
        ]
        # Bad input, a model the tier does not serve, a tier that cannot be asked: nothing.
        for values, field in (({"reason": "  "}, "reason"), ({"model": "gpt-4o", "reason": "x"},
                              "model"), ({"version": "", "reason": "x"}, "version")):  # fmt: skip
            refused = await promote(officer, **values)
            assert (refused["__typename"], refused["field"]) == ("InvalidInput", field), refused
        # Someone with the scope who is not the city's staff: the policies refuse.
        service = GraphQLClient(
            http,
            tokens.custom(subject="svc", kind="service", bureau="RDEC",
                          scopes=["incidents:read", "models:admin"]),
        )  # fmt: skip
        assert (await promote(service, reason="x"))["__typename"] == "Forbidden"
        # Staff without the scope: the same.
        supervisor = GraphQLClient(http, tokens.named("pwb-supervisor"))
        assert (await promote(supervisor, reason="x"))["__typename"] == "Forbidden"
        await fake.stop()
        down = await promote(officer, reason="while the tier is down")
        assert down["__typename"] == "ServiceUnavailable", down
    assert await owner.fetchval("SELECT count(*) FROM model_decision") == 1


async def test_the_record_of_decisions_cannot_be_changed_and_only_officers_add_to_it(
    database: DatabaseUnderTest, owner: asyncpg.Connection, clean: None
) -> None:
    await owner.execute(
        "INSERT INTO model_decision (model, version, role, reason, decided_by)"
        " VALUES ('m', '1', 'PRODUCTION', 'first', 'someone')"
    )
    with pytest.raises(asyncpg.PostgresError):
        await owner.execute("UPDATE model_decision SET reason = 'rewritten'")
    with pytest.raises(asyncpg.PostgresError):
        await owner.execute("DELETE FROM model_decision")
    app = await asyncpg.connect(database.app_url)
    try:
        for scopes, refused in (("incidents:read", True), ("incidents:read,models:admin", False)):
            async with app.transaction():
                await app.execute(
                    "SELECT set_config('lighthouse.subject', 'officer', true),"
                    " set_config('lighthouse.kind', 'staff', true),"
                    " set_config('lighthouse.scopes', $1, true)",
                    scopes,
                )
                insert = app.execute(
                    "INSERT INTO lighthouse.model_decision (model, version, role, reason,"
                    " decided_by) VALUES ('m', '2', 'PRODUCTION', 'why', 'officer')"
                )
                if refused:
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await insert
                else:
                    await insert
    finally:
        await app.close()


async def test_running_workers_follow_a_decided_threshold_from_their_next_batch(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    fake: FakeServing,
    settings_for: Callable[..., Settings],
) -> None:
    camera = await cameras("POLICE")
    fake.script.findings = [Said("POTHOLE", "hole", 0.7), Said("ILLEGAL_PARKING", "car", 0.7)]

    async def outcomes(sha: str) -> dict[str, str]:
        rows = await owner.fetch(
            "SELECT category, outcome FROM detection WHERE frame_sha256 = decode($1, 'hex')", sha
        )
        return {row["category"]: row["outcome"] for row in rows}

    async with vision_worker(settings_for(fake.url)) as worker:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop=stop))
        try:
            first = await send(http, tokens, camera, 1)
            await until(lambda: _has(outcomes, first), "the first frame recorded")
            assert await outcomes(first) == {"POTHOLE": "OPENED", "ILLEGAL_PARKING": "OPENED"}
            # A model officer decides 0.8 for potholes (arranged directly: the decision's own
            # path is tests/graph/models/test_thresholds.py).
            await owner.execute(
                "INSERT INTO category_threshold (category, threshold, reason, decided_by)"
                " VALUES ('POTHOLE', 0.8, 'precision asked: 0.9', 'rdec-evaluator')"
            )
            second = await send(http, tokens, await cameras("POLICE", longitude=120.4), 2)
            await until(lambda: _has(outcomes, second), "the second frame recorded")
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
    # The same worker, never restarted: potholes at 0.7 now open nothing; parking still does.
    assert await outcomes(second) == {"POTHOLE": "BELOW_THRESHOLD", "ILLEGAL_PARKING": "OPENED"}


async def _has(read: Callable[[str], Any], sha: str) -> bool:
    return bool(await read(sha))


async def test_the_cli_proposes_applies_and_lists_thresholds(
    database: DatabaseUnderTest, fake: FakeServing, owner: asyncpg.Connection, clean: None
) -> None:
    code, out, said = await models_cli(
        database, fake.url, "thresholds", "propose", "--precision", "0.9", "--category",
        "POTHOLE", "--json",
    )  # fmt: skip
    assert code == 0, said
    (proposal,) = json.loads(out)
    assert (proposal["category"], proposal["judged"], proposal["proposed"]) == ("POTHOLE", 0, None)
    code, _, said = await models_cli(
        database, fake.url, "thresholds", "apply", "POTHOLE", "0.8", "--precision", "0.9",
        "--reason", "PWB asks 0.9",
    )  # fmt: skip
    assert code == 0 and "POTHOLE needs 0.8" in " ".join(said.split()), said
    code, _, said = await models_cli(
        database, fake.url, "thresholds", "apply", "POTHOLE", "1.5", "--reason", "x"
    )
    assert code == 2 and "threshold" in said, said
    code, out, said = await models_cli(database, fake.url, "thresholds", "list", "--json")
    assert code == 0, said
    (listed,) = json.loads(out)
    assert (listed["category"], listed["threshold"], listed["target_precision"]) == (
        "POTHOLE", 0.8, 0.9,
    )  # fmt: skip
    assert listed["decided_by"].startswith("cli:")
