"""The discover step end to end on the real serving tier: Ray Serve LLM with vLLM on CPU and the
tiny model (random weights: its answer means nothing, but it is fixed by the grammar and the
same for every image at temperature 0), started once for the session.

Camera frame → queue → worker → the model over the OpenAI API → detections → incidents opened
or joined; an answer cut short is a recorded failure; the tier stopped mid-run holds the frames,
which finish once it is back, none lost and none analysed twice; analyzeImage on the spot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from api.settings import Settings
from api.vision.worker import vision_worker
from tests import embedded
from tests.serving_tier import CANDIDATE, MODEL, ServingTier
from tests.support import DatabaseUnderTest
from tests.tokens import TokenFactory
from tests.vision.conftest import (
    CameraFactory,
    frame_rows,
    graphql_upload,
    post_frame,
    queue_rows,
    worker_settings,
)
from tests.vision.images import photo

pytestmark = pytest.mark.serving

WAIT = 120.0


def settings(
    database: DatabaseUnderTest, frames_dir: Path, tier: ServingTier, **vision: Any
) -> Settings:
    # Every finding counts: the tiny model's confidences are near 1/n, whatever it sees.
    return worker_settings(
        database, frames_dir, tier.url, tier.secret_file, **({"threshold": 0.0} | vision)
    )


async def drain(worker_settings: Settings) -> None:
    async with vision_worker(worker_settings) as worker:
        await asyncio.wait_for(worker.run(drain=True), WAIT)


async def send(http: httpx.AsyncClient, tokens: TokenFactory, camera: str, seed: int) -> str:
    response = await post_frame(http, tokens.named("camera-gateway"), camera, photo(seed))
    assert response.status_code == 201, response.text
    sha: str = response.json()["frame"]["sha256"]
    return sha


async def detections_of(owner: asyncpg.Connection, sha: str) -> list[dict[str, Any]]:
    rows = await owner.fetch(
        "SELECT category, confidence, outcome, incident_id FROM detection"
        " WHERE frame_sha256 = decode($1, 'hex') ORDER BY category",
        sha,
    )
    return [dict(row) for row in rows]


async def until(condition: Callable[[], Awaitable[bool]], what: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {wait:.0f} s: {what}")
        await asyncio.sleep(0.5)


async def test_frames_become_incidents_through_the_real_model(
    serving_tier: ServingTier,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    database: DatabaseUnderTest,
    frames_dir: Path,
) -> None:
    camera = await cameras("POLICE")
    first = await send(http, tokens, camera.code, 1)
    assert await queue_rows(owner) == [{"status": "queued", "attempts": 0, "dedupe_key": first}]
    await drain(settings(database, frames_dir, serving_tier))

    analysis = await owner.fetchrow(
        "SELECT outcome, failure, raw_answer, model, prompt_version, latency_ms FROM frame_analysis"
    )
    assert analysis["outcome"] == "FINDINGS", dict(analysis)
    assert analysis["model"] == MODEL and analysis["latency_ms"] > 0
    opened = await detections_of(owner, first)
    assert opened and {d["outcome"] for d in opened} == {"OPENED"}
    assert all(0 < d["confidence"] <= 1 for d in opened)
    assert await frame_rows(owner) == [{"sha": first, "status": "ANALYSED"}]
    incidents = await owner.fetch(
        "SELECT id, status, source, category, asset_id FROM incident ORDER BY category"
    )
    assert [(i["category"], i["status"], i["source"], i["asset_id"]) for i in incidents] == [
        (d["category"], "DETECTED", "VLM", camera.id) for d in opened
    ]
    assert await queue_rows(owner) == []

    # Another frame from the same camera: the model answers alike (temperature 0), so each
    # finding joins the incident the first opened.
    second = await send(http, tokens, camera.code, 2)
    await drain(settings(database, frames_dir, serving_tier))
    joined = await detections_of(owner, second)
    assert [(d["category"], d["outcome"], d["incident_id"]) for d in joined] == [
        (d["category"], "ATTACHED", d["incident_id"]) for d in opened
    ]
    answers = await owner.fetch("SELECT raw_answer FROM frame_analysis ORDER BY id")
    assert answers[0]["raw_answer"] == answers[1]["raw_answer"]


async def test_an_answer_cut_short_is_recorded_as_unusable(
    serving_tier: ServingTier,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    database: DatabaseUnderTest,
    frames_dir: Path,
) -> None:
    camera = await cameras("POLICE")
    sha = await send(http, tokens, camera.code, 3)
    await drain(settings(database, frames_dir, serving_tier, max_answer_tokens=8))
    analysis = await owner.fetchrow("SELECT outcome, failure, raw_answer FROM frame_analysis")
    assert analysis["outcome"] == "UNUSABLE"
    assert analysis["failure"].startswith("the answer was cut short after 8 tokens")
    assert analysis["raw_answer"].startswith('{"findings"')
    assert await frame_rows(owner) == [{"sha": sha, "status": "FAILED"}]
    assert await owner.fetchval("SELECT count(*) FROM detection") == 0


ANALYZE = """
mutation Analyze($file: Upload!) {
  analyzeImage(file: $file) {
    __typename
    ... on ImageAnalysis {
      model modelVersion promptVersion outcome rawAnswer latencyMs failure
      findings { category note confidence aboveThreshold }
    }
    ... on Error { code message }
  }
}
"""


async def test_an_image_is_analysed_on_the_spot_and_nothing_is_kept(
    serving_tier: ServingTier,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    owner: asyncpg.Connection,
    clean: None,
) -> None:
    token = tokens.named("pwb-dispatcher")
    results = []
    for seed in (5, 6):
        response = await graphql_upload(http, token, ANALYZE, {}, photo(seed, kind="PNG"))
        assert response.status_code == 200, response.text
        results.append(response.json()["data"]["analyzeImage"])
    first, second = results
    assert first["__typename"] == "ImageAnalysis", first
    assert (first["model"], first["outcome"]) == (MODEL, "FINDINGS")
    assert first["promptVersion"].startswith("findings-v1-")
    assert first["findings"] and all(0 < f["confidence"] <= 1 for f in first["findings"])
    assert first["rawAnswer"] == second["rawAnswer"]  # temperature 0
    assert await owner.fetchval("SELECT count(*) FROM frame") == 0
    assert await owner.fetchval("SELECT count(*) FROM frame_analysis") == 0
    # A viewer may not spend the model's time.
    viewer = await graphql_upload(http, tokens.named("pwb-viewer"), ANALYZE, {}, photo(7))
    assert viewer.json()["data"]["analyzeImage"]["__typename"] == "Forbidden"
    ready = (await http.get("/readyz")).json()
    assert ready["serving"] == "ok"
    served = await http.post(
        "/graphql",
        json={"query": "{ serving { reachable models { id } configuredModel } }"},
        headers={"authorization": f"Bearer {token}"},
    )
    serving = served.json()["data"]["serving"]
    assert (serving["reachable"], serving["configuredModel"]) == (True, MODEL)
    assert sorted(m["id"] for m in serving["models"]) == [MODEL, CANDIDATE]


async def test_the_tier_down_mid_run_holds_frames_which_finish_once_it_is_back(
    serving_tier: ServingTier,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    database: DatabaseUnderTest,
    frames_dir: Path,
) -> None:
    """The tier's HTTP front crashes mid-run (Ray Serve's proxy killed, as a crash would): the
    worker meets a closed port, as when the whole tier is down, until Ray Serve has started
    another proxy (about half a minute). Stopping and starting the whole tier (`down`, `up`)
    is tested in the serving tier's own tests; here it would cost a cold start."""
    camera = await cameras("POLICE")
    stop = asyncio.Event()
    worker_config = settings(database, frames_dir, serving_tier, outage_retry_max_seconds=3)
    async with vision_worker(worker_config) as worker:
        running = asyncio.create_task(worker.run(stop=stop))
        try:
            before = await send(http, tokens, camera.code, 10)
            await until(
                lambda: _analysed(owner, 1), "the first frame analysed while the tier is up", WAIT
            )
            serving_tier.crash_front()
            assert not serving_tier.answers()
            during = [await send(http, tokens, camera.code, 11 + n) for n in range(3)]
            await until(
                lambda: _retried(owner, len(during)),
                "the frames tried while the tier is down",
                WAIT,
            )
            assert await owner.fetchval("SELECT count(*) FROM frame_analysis") == 1
            statuses = {r["sha"]: r["status"] for r in await frame_rows(owner)}
            assert [statuses[sha] for sha in during] == ["QUEUED"] * 3
            assert await owner.fetchval("SELECT max(failures) FROM frame") == 0
            await until(lambda: _analysed(owner, 4), "every frame analysed once it is back", WAIT)
        finally:
            stop.set()
            await asyncio.wait_for(running, WAIT)
    per_frame = await owner.fetch(
        "SELECT encode(frame_sha256, 'hex') AS sha, count(*) AS n FROM frame_analysis GROUP BY 1"
    )
    assert sorted((r["sha"], r["n"]) for r in per_frame) == sorted(
        (sha, 1) for sha in [before, *during]
    )
    assert await queue_rows(owner) == []
    outcomes = [d["outcome"] for sha in during for d in await detections_of(owner, sha)]
    assert outcomes and set(outcomes) == {"ATTACHED"}


async def _analysed(owner: asyncpg.Connection, frames: int) -> bool:
    done = await owner.fetchval("SELECT count(*) FROM frame WHERE status = 'ANALYSED'")
    return bool(done == frames)


async def _retried(owner: asyncpg.Connection, frames: int) -> bool:
    waiting = await owner.fetchval(
        "SELECT count(*) FROM pgqueuer WHERE attempts >= 2 AND status = 'queued'"
    )
    return bool(waiting == frames)


def test_a_killed_runs_tier_is_stopped_by_the_next_runs_reaping(serving_tier: ServingTier) -> None:
    """Last of the serving group: the tier's home is made to look like one a killed run left
    (its owner gone), and the reaping every run does first (tests/embedded.py) stops the tier,
    every process of it, and removes the home."""
    home = serving_tier.run_dir.parent
    supervisor = json.loads((serving_tier.run_dir / "state.json").read_text())["pid"]
    assert serving_tier.answers()
    (home / embedded.OWNER_FILE).write_text(json.dumps({"pid": 2**22 + 1, "started": 0}))
    assert home in embedded.reap_orphans(home.parent)
    serving_tier.running = False
    assert not serving_tier.answers()
    left = []
    for process in psutil.process_iter(["name", "status", "cmdline"]):
        with contextlib.suppress(OSError):
            if os.getsid(process.pid) == supervisor and process.info["status"] != "zombie":
                left.append((process.pid, process.info["name"], process.info["cmdline"]))
    assert left == [] and not home.exists(), left
