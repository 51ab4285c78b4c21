"""An evaluation run asked for in the graph: ``evaluateModelVersion`` opens the run and queues it,
a vision worker answers the set's frames as the officer who asked, and a run the serving tier
broke off is taken up again where it stopped. Bad requests are typed errors that open and queue
nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.settings import Settings
from api.vision.worker import vision_worker
from tests.support import DatabaseUnderTest, GraphQLClient
from tests.tokens import TokenFactory
from tests.vision.conftest import CameraFactory
from tests.vision.fake_serving import FakeServing, Script, image_digest
from tests.vision.test_evaluation import MODEL, police_model_officer, register_set
from tests.vision.test_model_trials import fake, officers  # noqa: F401 (fixtures)
from tests.vision.test_worker import until

pytestmark = pytest.mark.db

EVALUATE = """
mutation Evaluate($input: EvaluateModelVersionInput!) {
  evaluateModelVersion(input: $input) {
    __typename
    ... on EvaluationQueued { queued run { id model version frames answered } }
    ... on InvalidInput { field message }
    ... on Error { code message }
  }
}
"""
RUN = "query($id: ID!) { evaluationRun(id: $id) { answered unusable categories { category } } }"


async def evaluate(client: GraphQLClient, **values: Any) -> dict[str, Any]:
    data = await client.data(
        EVALUATE, {"input": {"model": MODEL, "version": "2026.12", "set": "night", **values}}
    )
    result: dict[str, Any] = data["evaluateModelVersion"]
    return result


async def nothing_opened(owner: asyncpg.Connection) -> bool:
    runs = await owner.fetchval("SELECT count(*) FROM evaluation_run")
    jobs = await owner.fetchval("SELECT count(*) FROM pgqueuer")
    return bool(runs == 0 and jobs == 0)


async def test_an_officer_queues_a_run_and_a_worker_answers_it_resuming_after_an_outage(
    officers: tuple[httpx.AsyncClient, TokenFactory],  # noqa: F811
    fake: FakeServing,  # noqa: F811
    database: DatabaseUnderTest,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    frames_dir: Path,
    settings_for: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    camera = await cameras("POLICE")
    frames = await register_set(database, fake.url, frames_dir, tmp_path, camera.code, "night", 12)
    graph, tokens = officers
    officer = GraphQLClient(graph, police_model_officer(tokens))

    # Refused, each with its reason, and nothing opened or queued.
    unknown_model = await evaluate(officer, model="city-vlm-99")
    assert unknown_model["__typename"] == "InvalidInput", unknown_model
    assert unknown_model["field"] == "model" and "does not serve" in unknown_model["message"]
    unknown_set = await evaluate(officer, set="daylight")
    assert unknown_set["__typename"] == "NotFound", unknown_set
    other_bureau = GraphQLClient(graph, tokens.named("rdec-evaluator"))  # RDEC's sets: none
    assert (await evaluate(other_bureau))["__typename"] == "NotFound"
    viewer = GraphQLClient(graph, tokens.named("police-viewer"))  # no models:admin
    assert (await evaluate(viewer))["__typename"] == "Forbidden"
    blank = await evaluate(officer, version="  ")
    assert (blank["__typename"], blank["field"]) == ("InvalidInput", "version")
    assert await nothing_opened(owner)

    queued = await evaluate(officer)
    assert queued["__typename"] == "EvaluationQueued", queued
    assert queued["queued"] is True
    run = queued["run"]
    assert (run["model"], run["version"], run["frames"], run["answered"]) == (
        MODEL, "2026.12", 12, 0,
    )  # fmt: skip
    # Asked again while it waits: the same run, nothing more queued.
    again = await evaluate(officer)
    assert (again["queued"], again["run"]["id"]) == (False, run["id"])
    jobs = await owner.fetch("SELECT entrypoint, status FROM pgqueuer")
    assert [(j["entrypoint"], j["status"]) for j in jobs] == [("evaluate_model", "queued")]

    # The tier breaks off at the seventh frame (one asker: the digests in the set's order).
    for frame in frames:
        fake.by_image[frame["digest"]] = Script(findings=frame["said"])
    ordered = sorted(frames, key=lambda f: f["digest"])
    fake.by_image[ordered[6]["digest"]] = Script(failures=[503] * 1000)

    async def answered() -> int:
        return int(await owner.fetchval("SELECT count(*) FROM evaluation_answer"))

    async with vision_worker(settings_for(fake.url, worker_concurrency=2)) as worker:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop=stop))
        try:

            async def broke_off() -> bool:
                return len(fake.requests) >= 7 and await answered() == 6

            await until(broke_off, "the run broken off at the seventh frame")
            job = await owner.fetchrow("SELECT status, attempts FROM pgqueuer")
            assert job is not None and job["status"] in ("queued", "picked"), job
            # Back: the worker takes the job up again and asks only what is left.
            fake.by_image[ordered[6]["digest"]] = Script(findings=ordered[6]["said"])

            async def finished() -> bool:
                left = await owner.fetchval("SELECT count(*) FROM pgqueuer")
                return await answered() == 12 and left == 0

            await until(finished, "every frame answered and the job done")
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
    # Each frame asked once, but the one the tier broke off at (asked again once it was back).
    asked: dict[bytes, int] = {}
    for request in fake.requests:
        asked[image_digest(request)] = asked.get(image_digest(request), 0) + 1
    assert asked.pop(ordered[6]["digest"]) >= 2
    assert asked == {frame["digest"]: 1 for frame in ordered if frame is not ordered[6]}
    figures = (await officer.data(RUN, {"id": run["id"]}))["evaluationRun"]
    assert (figures["answered"], figures["unusable"]) == (12, 0)
    # Answered as the officer who asked: audited under their name.
    operations = await owner.fetch(
        "SELECT operation, payload FROM audit_record WHERE subject = 'police-model-officer'"
        " ORDER BY seq"
    )
    seen = [(row["operation"], row["payload"]) for row in operations]
    asked_for = [payload for operation, payload in seen if operation == "Evaluate"]
    assert any('"QUEUED"' in payload for payload in asked_for), asked_for
    assert any('"WAITING"' in payload for payload in asked_for), asked_for
    assert any(operation == "evaluationAnswers" for operation, _ in seen), seen
