"""The loop between the model and the people on the real serving tier: Ray Serve LLM serving two
versions of the tiny model side by side (variants 0 and 1, each its own vLLM engine on CPU,
serving/configs/cpu-tiny-two.yaml), a vision worker following the registry, and people acting on
what the model found through the graph.

A day of the workflow yields exactly the review outcomes and precision of what people did; a
candidate in shadow is recorded and opens nothing; promoted, it takes the next frames without a
restart and no frame is analysed twice by one version; a canary people reject is rolled back by
the worker itself. Every decision is audited. With random weights, what each version says is
fixed (temperature 0, the same for every image), so the counts follow from each version's answer,
read from the tier in each test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.auth.dev_principals import READ_WRITE
from api.domain.quality import wilson_interval
from api.repositories.registry import DecisionRecord
from api.services.vision.choice import takes
from api.settings import Settings
from api.vision.worker import VisionWorker, vision_worker
from tests.graph.helpers import act
from tests.serving_tier import CANDIDATE, MODEL, ServingTier
from tests.support import DatabaseUnderTest, GraphQLClient
from tests.tokens import TokenFactory
from tests.vision.conftest import CameraFactory, graphql_upload
from tests.vision.images import photo
from tests.vision.test_model_decisions import PROMOTE
from tests.vision.test_model_trials import TRIAL, TRY, analyses, read_incident
from tests.vision.test_pipeline import ANALYZE, settings, until
from tests.vision.test_worker import send

pytestmark = pytest.mark.serving

WAIT = 120.0
QUALITY = """
query Quality($filter: ModelQualityFilterInput) {
  modelQuality(filter: $filter) {
    model version category
    detections reviewed confirmed rejected duplicates transferred pending
    precision precisionInterval { low high }
  }
}
"""


@asynccontextmanager
async def running(worker_settings: Settings) -> AsyncIterator[VisionWorker]:
    """A vision worker taking frames as they come, for the whole block (never restarted)."""
    async with vision_worker(worker_settings) as worker:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop=stop))
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)


async def analysed(owner: asyncpg.Connection, sha: str, versions: int = 1) -> None:
    async def done() -> bool:
        return len(await analyses(owner, sha)) >= versions

    await until(done, f"frame {sha[:12]} analysed by {versions} version(s)", WAIT)


async def found(owner: asyncpg.Connection, sha: str, role: str) -> list[dict[str, Any]]:
    """What the version in ``role`` found in the frame: its detections, with their incidents."""
    rows = await owner.fetch(
        "SELECT d.category, d.outcome, d.incident_id FROM detection d"
        " JOIN frame_analysis a ON a.id = d.analysis_id"
        " WHERE d.frame_sha256 = decode($1, 'hex') AND a.role = $2 ORDER BY d.category",
        sha,
        role,
    )
    return [dict(row) for row in rows]


async def judge(
    owner: asyncpg.Connection,
    tokens: TokenFactory,
    http: httpx.AsyncClient,
    key: int,
    action: str,
    **extra: Any,
) -> dict[str, Any]:
    """``action`` on the incident ``key`` as a supervisor of the bureau it was routed to (which
    bureau depends on the category the model named); the mutation's result, which must be the
    updated incident."""
    bureau = await owner.fetchval(
        "SELECT b.code FROM incident i JOIN bureau b ON b.id = i.responsible_bureau_id"
        " WHERE i.id = $1",
        key,
    )
    token = tokens.custom(
        subject=f"{bureau.lower()}-supervisor", kind="staff", bureau=bureau,
        roles=["supervisor"], scopes=list(READ_WRITE),
    )  # fmt: skip
    staff = GraphQLClient(http, token)
    done = await act(staff, action, await read_incident(staff, key), **extra)
    assert done["__typename"] == "IncidentUpdated", done
    return done


async def test_a_day_of_the_workflow_measures_production_and_a_promoted_shadow_takes_over(
    serving_tier: ServingTier,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    database: DatabaseUnderTest,
    frames_dir: Path,
) -> None:
    officer = GraphQLClient(http, tokens.named("rdec-evaluator"))
    since = await owner.fetchval("SELECT now()")
    places = [await cameras("POLICE", longitude=120.25 + 0.02 * i) for i in range(7)]
    async with running(settings(database, frames_dir, serving_tier)):
        # The morning: production alone, four places, four frames.
        morning = [await send(http, tokens, places[i], i + 1) for i in range(4)]
        for sha in morning:
            await analysed(owner, sha)
            assert await analyses(owner, sha) == [(MODEL, "PRODUCTION")]
        seen = [await found(owner, sha, "PRODUCTION") for sha in morning]
        categories = sorted({d["category"] for d in seen[0]})
        assert categories, "production found nothing: the day has nothing to review"
        # Temperature 0 and random weights: the same findings at every place, each opening
        # an incident of its own (the places are kilometres apart).
        assert all(sorted(d["category"] for d in s) == categories for s in seen), seen
        assert all(d["outcome"] == "OPENED" for s in seen for d in s), seen

        # People look: the first place's findings confirmed, the second's rejected as false
        # reports, the third's merged into the first's, the fourth's left for tomorrow.
        first: dict[str, str] = {}
        for number, findings in enumerate(seen[:3]):
            for detection in findings:
                key = detection["incident_id"]
                if number == 0:
                    verified = await judge(owner, tokens, http, key, "VERIFY")
                    first[detection["category"]] = verified["incident"]["id"]
                elif number == 1:
                    await judge(owner, tokens, http, key, "CLOSE", reason="FALSE_POSITIVE")
                else:
                    await judge(owner, tokens, http, key, "MARK_DUPLICATE",
                                duplicateOf=first[detection["category"]])  # fmt: skip

        quality = (await officer.data(QUALITY, {"filter": {"model": [MODEL]}}))["modelQuality"]
        assert [(q["model"], q["version"], q["category"]) for q in quality] == [
            (MODEL, "1", category) for category in categories
        ]
        interval = wilson_interval(1, 2)
        assert interval is not None
        for figures in quality:
            assert {k: figures[k] for k in ("detections", "reviewed", "confirmed", "rejected",
                                            "duplicates", "transferred", "pending")} == {
                "detections": 4, "reviewed": 3, "confirmed": 1, "rejected": 1, "duplicates": 1,
                "transferred": 0, "pending": 1,
            }  # fmt: skip
            assert figures["precision"] == 0.5  # one confirmed of the two judged
            assert figures["precisionInterval"] == {
                "low": pytest.approx(interval.low), "high": pytest.approx(interval.high)
            }  # fmt: skip

        # The afternoon: the other version in shadow, on every frame.
        tried = await officer.data(TRY, {"input": {
            "model": CANDIDATE, "version": "b1", "role": "SHADOW", "share": 1.0,
            "reason": "compare before promoting",
        }})  # fmt: skip
        assert tried["tryModelVersion"]["__typename"] == "ModelTrialStarted", tried
        afternoon = [await send(http, tokens, places[4 + i], 10 + i) for i in range(2)]
        for sha in afternoon:
            await analysed(owner, sha, versions=2)
            assert await analyses(owner, sha) == [(MODEL, "PRODUCTION"), (CANDIDATE, "SHADOW")]
            # Two versions, two answers: the variants differ.
            answers = await owner.fetch(
                "SELECT raw_answer FROM frame_analysis WHERE frame_sha256 = decode($1, 'hex')",
                sha,
            )
            assert answers[0]["raw_answer"] != answers[1]["raw_answer"]
            # The shadow's findings are recorded and open nothing; production's open as before.
            assert all(
                d["outcome"] == "SHADOW" and d["incident_id"] is None
                for d in await found(owner, sha, "SHADOW")
            )
            assert sorted(d["category"] for d in await found(owner, sha, "PRODUCTION")) == (
                categories
            )
        opened = await owner.fetchval("SELECT count(*) FROM incident WHERE source = 'VLM'")
        assert opened == 6 * len(categories)  # four places in the morning, two since
        trial = (await officer.data(TRIAL))["modelTrial"]
        assert (trial["productionFrames"], trial["candidateFrames"]) == (2, 2)
        assert trial["decision"]["model"] == CANDIDATE

        # Promoted while the worker runs: the next frame is the candidate's alone, and none of
        # the frames it saw in shadow is analysed again.
        promoted = await officer.data(PROMOTE, {"input": {
            "model": CANDIDATE, "version": "b1", "reason": "agreed with the reviews",
        }})  # fmt: skip
        assert promoted["promoteModelVersion"]["__typename"] == "ModelPromoted", promoted
        evening = await send(http, tokens, places[6], 20)
        await analysed(owner, evening)
        await asyncio.sleep(1.0)  # a second version's answer would be recorded by now
        assert await analyses(owner, evening) == [(CANDIDATE, "PRODUCTION")]
        # An image analysed on the spot is the promoted version's too.
        spot = await graphql_upload(
            http, tokens.named("pwb-dispatcher"), ANALYZE, {}, photo(30, kind="PNG")
        )
        answered = spot.json()["data"]["analyzeImage"]
        assert (answered["model"], answered["modelVersion"]) == (CANDIDATE, "b1"), answered
    twice = await owner.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM frame_analysis"
        " GROUP BY frame_sha256, model, model_version HAVING count(*) > 1) AS repeated"
    )
    assert twice == 0
    for sha in afternoon:
        assert await analyses(owner, sha) == [(MODEL, "PRODUCTION"), (CANDIDATE, "SHADOW")]
    assert (await officer.data(TRIAL))["modelTrial"] is None  # promotion ended the trial

    # Every decision is in the audit trail, by whom it was made.
    audited = await owner.fetch(
        "SELECT operation FROM audit_record WHERE subject = 'rdec-evaluator'"
        " AND occurred_at >= $1 AND operation IN ('Try', 'Promote') ORDER BY seq",
        since,
    )
    assert [row["operation"] for row in audited] == ["Try", "Promote"]


async def test_a_canary_people_reject_is_rolled_back_by_the_worker(
    serving_tier: ServingTier,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    database: DatabaseUnderTest,
    frames_dir: Path,
) -> None:
    officer = GraphQLClient(http, tokens.named("rdec-evaluator"))
    started = await officer.data(TRY, {"input": {
        "model": CANDIDATE, "version": "b1", "role": "CANARY", "share": 0.5,
        "rejectedBound": 0.5, "minReviewed": 2, "reason": "half the frames, watched",
    }})  # fmt: skip
    assert started["tryModelVersion"]["__typename"] == "ModelTrialStarted", started
    row = await owner.fetchrow(
        "SELECT * FROM model_decision WHERE id = $1",
        int(started["tryModelVersion"]["decision"]["id"]),
    )
    trial = DecisionRecord(**{k: row[k] for k in DecisionRecord.__dataclass_fields__})
    canary: list[str] = []
    seed = 100
    watched = settings(database, frames_dir, serving_tier, canary_check_seconds=0.2)
    async with running(watched) as worker:
        while len(canary) < 2:
            seed += 1
            place = await cameras("POLICE", longitude=120.10 + 0.02 * seed)
            sha = await send(http, tokens, place, seed)
            if takes(trial, bytes.fromhex(sha)):
                canary.append(sha)
            await analysed(owner, sha)
            role = "CANARY" if sha in canary else "PRODUCTION"
            assert await analyses(owner, sha) == [(CANDIDATE if sha in canary else MODEL, role)]
        assert await worker.check_canary() is None  # nobody has looked yet
        rejected = 0
        for sha in canary:
            findings = await found(owner, sha, "CANARY")
            assert findings, "the candidate found nothing: there is nothing to reject"
            for detection in findings:
                key = detection["incident_id"]
                await judge(owner, tokens, http, key, "CLOSE", reason="FALSE_POSITIVE")
                rejected += 1

        async def rolled_back() -> bool:
            return bool(await owner.fetchval(
                "SELECT count(*) FROM model_decision WHERE ends = $1", trial.id
            ))  # fmt: skip

        await until(rolled_back, "the canary rolled back by the worker", WAIT)
        ended = await owner.fetchrow("SELECT * FROM model_decision WHERE ends = $1", trial.id)
        assert (ended["role"], ended["decided_by"]) == ("TRIAL_ENDED", "system:canary-watch")
        assert f"rejected {rejected} of the {rejected}" in ended["reason"], ended["reason"]
        # What the canary would have taken is production's now.
        while True:
            seed += 1
            place = await cameras("POLICE", longitude=120.10 + 0.02 * seed)
            sha = await send(http, tokens, place, seed)
            if takes(trial, bytes.fromhex(sha)):
                break
            await analysed(owner, sha)
        await analysed(owner, sha)
        assert await analyses(owner, sha) == [(MODEL, "PRODUCTION")]
