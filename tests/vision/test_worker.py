"""The vision worker with a stand-in model behind the serving tier's API (the pipeline tests
run the real tier): frames become detections that open or join incidents, exactly once;
unusable answers are recorded failures; an outage holds frames without losing any; broken
analyses are retried, then held for an operator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from api.settings import Settings
from api.vision.worker import queue_counts, queue_queries, requeue_failed, vision_worker
from tests.graph.helpers import global_id
from tests.support import DatabaseUnderTest, GraphQLClient
from tests.tokens import TokenFactory
from tests.vision.conftest import (
    Camera,
    CameraFactory,
    frame_rows,
    post_frame,
    queue_rows,
)
from tests.vision.fake_serving import FakeServing, Said
from tests.vision.images import photo

pytestmark = pytest.mark.db

WAIT = 30.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeServing]:
    async with FakeServing() as serving:
        yield serving


async def drain(settings: Settings) -> None:
    """One worker, until the queue is empty."""
    async with vision_worker(settings) as worker:
        await asyncio.wait_for(worker.run(drain=True), WAIT)


async def send(http: httpx.AsyncClient, tokens: TokenFactory, camera: Camera, seed: int) -> str:
    response = await post_frame(http, tokens.named("camera-gateway"), camera.code, photo(seed))
    assert response.status_code == 201, response.text
    sha: str = response.json()["frame"]["sha256"]
    return sha


async def detections(owner: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await owner.fetch(
        "SELECT encode(frame_sha256, 'hex') AS sha, category, round(confidence::numeric, 4)"
        " AS confidence, outcome, incident_id FROM detection ORDER BY id"
    )
    return [dict(row) for row in rows]


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT} s: {what}")
        await asyncio.sleep(0.2)


async def test_a_finding_opens_an_incident_and_the_next_one_nearby_joins_it(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    fake: FakeServing,
    settings_for: Callable[..., Settings],
) -> None:
    camera = await cameras("POLICE")
    fake.script.findings = [Said("POTHOLE", "hole in lane 2", 0.9)]
    first = await send(http, tokens, camera, 1)
    await drain(settings_for(fake.url))

    (request,) = fake.requests
    assert request["temperature"] == 0 and request["logprobs"] is True
    assert request["response_format"]["type"] == "json_schema"
    schema = request["response_format"]["json_schema"]["schema"]
    assert "POTHOLE" in schema["properties"]["findings"]["items"]["properties"]["category"]["enum"]
    image = request["messages"][0]["content"][0]["image_url"]["url"]
    assert image.startswith("data:image/jpeg;base64,")

    (found,) = await detections(owner)
    assert (found["sha"], found["category"], found["outcome"]) == (first, "POTHOLE", "OPENED")
    assert float(found["confidence"]) == 0.9
    incident = await owner.fetchrow(
        "SELECT i.status, i.source, i.category, i.asset_id, i.description, r.code AS responsible,"
        " p.code AS reporting FROM incident i JOIN bureau r ON r.id = i.responsible_bureau_id"
        " JOIN bureau p ON p.id = i.reporting_bureau_id WHERE i.id = $1",
        found["incident_id"],
    )
    assert dict(incident) == {
        "status": "DETECTED", "source": "VLM", "category": "POTHOLE", "asset_id": camera.id,
        "description": "hole in lane 2", "responsible": "PUBLIC_WORKS", "reporting": "POLICE",
    }  # fmt: skip
    analysis = await owner.fetchrow("SELECT outcome, model, prompt_version FROM frame_analysis")
    assert (analysis["outcome"], analysis["model"]) == ("FINDINGS", "lighthouse-tiny-vlm")
    assert analysis["prompt_version"].startswith("findings-v1-")
    assert await frame_rows(owner) == [{"sha": first, "status": "ANALYSED"}]
    assert await queue_rows(owner) == []  # done jobs leave the queue

    # Another frame of the same place and kind joins the incident as evidence; another kind,
    # or the same kind far away, opens its own.
    second = await send(http, tokens, camera, 2)
    far = await cameras("POLICE", latitude=22.6473)  # about 2.2 km north
    distant = await send(http, tokens, far, 3)
    await drain(settings_for(fake.url))
    fake.script.findings = [Said("ILLEGAL_DUMPING", "sofa", 0.8)]
    other = await send(http, tokens, camera, 4)
    await drain(settings_for(fake.url))
    by_frame = {r["sha"]: r for r in await detections(owner)}
    assert [(by_frame[sha]["category"], by_frame[sha]["outcome"]) for sha in (
        first, second, distant, other)] == [
        ("POTHOLE", "OPENED"), ("POTHOLE", "ATTACHED"), ("POTHOLE", "OPENED"),
        ("ILLEGAL_DUMPING", "OPENED"),
    ]  # fmt: skip
    assert by_frame[second]["incident_id"] == found["incident_id"]
    assert len({r["incident_id"] for r in by_frame.values()}) == 3

    # The responsible bureau sees the evidence on its incident, frame and analysis included.
    public_works = GraphQLClient(http, tokens.named("pwb-supervisor"))
    data = await public_works.data(
        """query($id: ID!) { node(id: $id) { ... on Incident {
             detections { outcome confidence note frameSha256 category { code }
                          frame { sha256 status camera { code } }
                          analysis { outcome promptVersion model } } } } }""",
        {"id": global_id("Incident", found["incident_id"])},
    )
    evidence = data["node"]["detections"]
    assert [(d["outcome"], d["frame"]["sha256"]) for d in evidence] == [
        ("OPENED", first), ("ATTACHED", second),
    ]  # fmt: skip
    assert evidence[0]["analysis"]["outcome"] == "FINDINGS"
    assert evidence[0]["frame"]["camera"]["code"] == camera.code


async def test_a_finding_below_its_threshold_is_recorded_and_opens_nothing(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    fake: FakeServing,
    settings_for: Callable[..., Settings],
) -> None:
    camera = await cameras("POLICE")
    fake.script.findings = [Said("POTHOLE", "maybe", 0.3), Said("FLOODING", "puddle", 0.3)]
    await send(http, tokens, camera, 11)
    # The default threshold is 0.5; flooding is watched closer (0.25 for it).
    await drain(settings_for(fake.url, thresholds={"FLOODING": 0.25}))
    rows = await detections(owner)
    assert {(r["category"], r["outcome"]) for r in rows} == {
        ("POTHOLE", "BELOW_THRESHOLD"), ("FLOODING", "OPENED"),
    }  # fmt: skip
    assert [r["incident_id"] is None for r in rows if r["category"] == "POTHOLE"] == [True]
    assert await owner.fetchval("SELECT count(*) FROM incident") == 1


@pytest.mark.parametrize(
    ("text", "finish", "failure"),
    [
        ('{"findings": [{"category": "POTHOLE", "no', "length", "cut short after 20 tokens"),
        ('{"findings": [{"category": "VOLCANO", "note": ""}]}', "stop", "unknown category"),
        ("I see a pothole.", "stop", "not JSON"),
    ],
    ids=["cut-off", "unknown-category", "prose"],
)
async def test_an_unusable_answer_is_a_recorded_failure_not_a_crash(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    fake: FakeServing,
    settings_for: Callable[..., Settings],
    text: str,
    finish: str,
    failure: str,
) -> None:
    camera = await cameras("POLICE")
    fake.script.text, fake.script.finish_reason = text, finish
    sha = await send(http, tokens, camera, 21)
    await drain(settings_for(fake.url))
    analysis = await owner.fetchrow("SELECT outcome, failure, raw_answer FROM frame_analysis")
    assert analysis["outcome"] == "UNUSABLE"
    assert failure in analysis["failure"] and analysis["raw_answer"] == text
    assert await frame_rows(owner) == [{"sha": sha, "status": "FAILED"}]
    assert await detections(owner) == [] and await queue_rows(owner) == []


async def test_while_the_tier_is_down_frames_wait_and_finish_when_it_is_back(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    settings_for: Callable[..., Settings],
) -> None:
    camera = await cameras("POLICE")
    serving = FakeServing()  # not started: nothing answers at its address
    serving.script.findings = [Said("POTHOLE", "hole", 0.9)]
    sent = [await send(http, tokens, camera, 30 + n) for n in range(3)]
    settings = settings_for(serving.url, outage_retry_max_seconds=0.5)
    stop = asyncio.Event()
    async with vision_worker(settings) as worker:
        running = asyncio.create_task(worker.run(stop=stop))
        try:
            await until(
                lambda: _attempted(owner, len(sent)), "every frame tried while the tier is down"
            )
            assert {r["status"] for r in await frame_rows(owner)} == {"QUEUED"}
            assert await owner.fetchval("SELECT count(*) FROM frame_analysis") == 0
            assert await owner.fetchval("SELECT max(failures) FROM frame") == 0  # not counted
            await serving.start()  # the tier is back
            await until(lambda: _all_analysed(owner), "every frame analysed once it is back")
        finally:
            stop.set()
            await asyncio.wait_for(running, WAIT)
            await serving.stop()
    assert sorted(r["sha"] for r in await frame_rows(owner)) == sorted(sent)
    per_frame = await owner.fetch(
        "SELECT encode(frame_sha256, 'hex') AS sha, count(*) FROM frame_analysis GROUP BY 1"
    )
    assert sorted((r["sha"], r["count"]) for r in per_frame) == sorted((s, 1) for s in sent)
    assert await queue_rows(owner) == []
    assert [r["outcome"] for r in await detections(owner)] == ["OPENED", "ATTACHED", "ATTACHED"]


async def _attempted(owner: asyncpg.Connection, frames: int) -> bool:
    tried = await owner.fetchval("SELECT count(*) FROM pgqueuer WHERE attempts >= 2")
    return bool(tried == frames)


async def _all_analysed(owner: asyncpg.Connection) -> bool:
    statuses = {r["status"] for r in await frame_rows(owner)}
    return statuses == {"ANALYSED"} and await queue_rows(owner) == []


async def test_concurrent_workers_analyse_each_frame_once_and_open_one_incident(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    fake: FakeServing,
    settings_for: Callable[..., Settings],
) -> None:
    camera = await cameras("POLICE")
    fake.script.findings = [Said("FLOODING", "water", 0.95)]
    fake.script.delay_seconds = 0.05
    sent = [await send(http, tokens, camera, 100 + n) for n in range(12)]
    settings = settings_for(fake.url, worker_concurrency=6)
    await asyncio.gather(drain(settings), drain(settings), drain(settings))
    assert await owner.fetchval("SELECT count(*) FROM frame_analysis") == len(sent)
    rows = await detections(owner)
    assert sorted(r["outcome"] for r in rows) == ["ATTACHED"] * 11 + ["OPENED"]
    assert len({r["incident_id"] for r in rows}) == 1
    assert len(fake.requests) == len(sent)  # no frame was asked about twice


async def test_a_broken_analysis_is_retried_then_held_and_an_operator_sends_it_round(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    database: DatabaseUnderTest,
    fake: FakeServing,
    settings_for: Callable[..., Settings],
) -> None:
    camera = await cameras("POLICE")
    fake.script.garbage = True  # 200 OK, and not JSON: a fault, not an outage
    sha = await send(http, tokens, camera, 41)
    settings = settings_for(fake.url, max_attempts=2)
    await drain(settings)
    held = await owner.fetchrow("SELECT status, failures, last_failure FROM frame")
    assert (held["status"], held["failures"]) == ("FAILED", 2)
    assert "JSONDecodeError" in held["last_failure"]
    assert [r["status"] for r in await queue_rows(owner)] == ["failed"]  # the dead letter
    connection = await asyncpg.connect(database.owner_url)
    try:
        await connection.execute("SET search_path = lighthouse, public")
        assert (await queue_counts(queue_queries(connection))).failed == 1
        fake.script.garbage = False
        fake.script.findings = [Said("POTHOLE", "hole", 0.9)]
        assert await requeue_failed(connection, 100) == 1
    finally:
        await connection.close()
    assert await frame_rows(owner) == [{"sha": sha, "status": "QUEUED"}]
    await drain(settings)
    assert await frame_rows(owner) == [{"sha": sha, "status": "ANALYSED"}]
    assert [r["outcome"] for r in await detections(owner)] == ["OPENED"]


async def test_a_job_no_worker_can_do_is_held_at_once(
    owner: asyncpg.Connection, fake: FakeServing, settings_for: Callable[..., Settings], clean: None
) -> None:
    await owner.execute(
        "INSERT INTO pgqueuer (priority, entrypoint, payload, status)"
        " VALUES (0, 'analyse_frame', $1, 'queued')",
        b'{"frame": "zz"}',
    )
    await drain(settings_for(fake.url))
    assert [(r["status"], r["attempts"]) for r in await queue_rows(owner)] == [("failed", 0)]
    assert fake.requests == []
