"""A candidate version tried beside production: in shadow it analyses the frames as well, opens
nothing, and is compared with production by what people did with production's findings; as a
canary it analyses a share of the frames for real and the workers end it by themselves when people
reject too much of what it found. Every trial decision is a model officer's (or, for a rollback,
the system's), audited, with bad input refused and nothing written."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.graph.domains import DOMAINS
from api.repositories.registry import DecisionRecord
from api.services.vision.choice import takes
from api.settings import ServingSettings, Settings
from api.vision.worker import vision_worker
from tests.graph.helpers import act
from tests.support import (
    DatabaseUnderTest,
    GraphQLClient,
    InProcessGateway,
    free_port,
    in_process_settings,
)
from tests.tokens import TokenFactory
from tests.vision.conftest import Camera, CameraFactory
from tests.vision.fake_serving import FakeServing, Said, Script
from tests.vision.test_model_decisions import models_cli
from tests.vision.test_worker import send, until

pytestmark = pytest.mark.db

FIRST, SECOND = "lighthouse-tiny-vlm", "lighthouse-tiny-vlm-b"

TRY = """
mutation Try($input: TryModelVersionInput!) {
  tryModelVersion(input: $input) {
    __typename
    ... on ModelTrialStarted { decision { id model version role share rejectedBound minReviewed } }
    ... on InvalidInput { field message }
    ... on Error { code message }
  }
}
"""
END = """
mutation End($input: EndModelTrialInput!) {
  endModelTrial(input: $input) {
    __typename
    ... on ModelTrialEnded { decision { id role ends decidedBy reason } }
    ... on Error { code message }
  }
}
"""
TRIAL = """
query Trial($id: ID) {
  modelTrial(id: $id) {
    decision { id role model version }
    productionModel productionVersion endedAt productionFrames candidateFrames
    categories {
      category both productionOnly candidateOnly agreement
      production { detections confirmed rejected pending precision }
      candidate { detections confirmed rejected pending precision }
    }
  }
}
"""
INCIDENT = "query($id: ID!) { incident(id: $id) { id version status } }"
SHADOWED = """
{ detections(filter: {outcome: [SHADOW]}) { edges { node { outcome incident { id }
    frame { analyses { model role } } } } } }
"""


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeServing]:
    async with FakeServing(FIRST, SECOND) as serving:
        yield serving


@pytest_asyncio.fixture
async def officers(
    database: DatabaseUnderTest, fake: FakeServing
) -> AsyncIterator[tuple[httpx.AsyncClient, TokenFactory]]:
    """A gateway whose serving tier is the fake one (the session's is the real tier)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    serving = ServingSettings(url=fake.url, retries=0, timeout_seconds=10)
    settings = in_process_settings(database, issuer, pool_max_size=4, serving=serving)
    async with (
        InProcessGateway(create_app(settings, list(DOMAINS.values())), port) as gateway,
        httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http,
    ):
        yield http, TokenFactory(database.owner_url, issuer)


async def start_trial(client: GraphQLClient, **values: Any) -> dict[str, Any]:
    data = await client.data(TRY, {"input": {"model": SECOND, "version": "2", **values}})
    result: dict[str, Any] = data["tryModelVersion"]
    return result


async def analyses(owner: asyncpg.Connection, sha: str) -> list[tuple[str, str]]:
    rows = await owner.fetch(
        "SELECT model, role FROM frame_analysis WHERE frame_sha256 = decode($1, 'hex')"
        " ORDER BY model",
        sha,
    )
    return [(row["model"], row["role"]) for row in rows]


async def incident_of(owner: asyncpg.Connection, sha: str) -> int | None:
    found: int | None = await owner.fetchval(
        "SELECT incident_id FROM detection WHERE frame_sha256 = decode($1, 'hex')"
        " AND outcome <> 'SHADOW'",
        sha,
    )
    return found


async def read_incident(client: GraphQLClient, key: int) -> dict[str, Any]:
    node_id = f"Incident:{key}"
    data = await client.data(INCIDENT, {"id": base64.b64encode(node_id.encode()).decode()})
    incident: dict[str, Any] = data["incident"]
    return incident


async def test_a_shadow_opens_nothing_and_is_compared_by_what_people_did_with_production(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    officers: tuple[httpx.AsyncClient, TokenFactory],
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    fake: FakeServing,
    settings_for: Callable[..., Settings],
) -> None:
    graph, graph_tokens = officers
    officer = GraphQLClient(graph, graph_tokens.named("rdec-evaluator"))
    staff = GraphQLClient(graph, graph_tokens.named("pwb-supervisor"))
    started_at = await owner.fetchval("SELECT now()")
    started = await start_trial(officer, role="SHADOW", share=1.0, reason="before promoting it")
    assert started["__typename"] == "ModelTrialStarted", started
    decision = started["decision"]
    assert (decision["role"], decision["share"]) == ("SHADOW", 1.0)
    # Four places, each a frame on which the two versions say (production; shadow):
    said = [
        ([Said("POTHOLE", "hole", 0.9)], [Said("POTHOLE", "hole", 0.8)]),  # both
        ([Said("POTHOLE", "hole", 0.9)], []),  # production only
        ([], [Said("POTHOLE", "hole", 0.9)]),  # the shadow only
        ([Said("POTHOLE", "hole", 0.9)], [Said("POTHOLE", "faint", 0.3)]),  # under threshold
    ]
    places = [await cameras("POLICE", longitude=120.30 + 0.02 * i) for i in range(5)]
    frames: list[str] = []
    async with vision_worker(settings_for(fake.url)) as worker:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop=stop))
        try:
            for number, (production, shadow) in enumerate(said):
                fake.scripts = {FIRST: Script(findings=production), SECOND: Script(findings=shadow)}
                sha = await send(http, tokens, places[number], number + 1)

                async def analysed(sha: str = sha) -> bool:
                    return len(await analyses(owner, sha)) == 2

                await until(analysed, f"frame {number} analysed by both versions")
                frames.append(sha)
            for sha in frames:
                assert await analyses(owner, sha) == [(FIRST, "PRODUCTION"), (SECOND, "SHADOW")]

            # The shadow's findings are recorded, open nothing, and get no review outcome.
            shadowed = await owner.fetch(
                "SELECT d.id, d.incident_id, r.detection_id AS reviewed FROM detection d"
                " LEFT JOIN detection_review r ON r.detection_id = d.id"
                " WHERE d.outcome = 'SHADOW'"
            )
            assert len(shadowed) == 3
            assert all(r["incident_id"] is None and r["reviewed"] is None for r in shadowed)
            # In the graph, as the camera's bureau sees them: outcome SHADOW, analyses by role.
            police = GraphQLClient(http, tokens.named("police-viewer"))
            listed = await police.data(SHADOWED)
            nodes = [edge["node"] for edge in listed["detections"]["edges"]]
            assert len(nodes) == 3 and {n["outcome"] for n in nodes} == {"SHADOW"}
            assert all(n["incident"] is None for n in nodes)
            roles = {a["model"]: a["role"] for a in nodes[0]["frame"]["analyses"]}
            assert roles == {FIRST: "PRODUCTION", SECOND: "SHADOW"}
            opened = await owner.fetchval("SELECT count(*) FROM incident WHERE source = 'VLM'")
            assert opened == 3  # the places production saw something; none for the shadow's
            assert await incident_of(owner, frames[2]) is None

            # People verify the first, reject the second, leave the fourth for later.
            first = await incident_of(owner, frames[0])
            second = await incident_of(owner, frames[1])
            assert first is not None and second is not None
            await act(staff, "VERIFY", await read_incident(staff, first))
            await act(staff, "CLOSE", await read_incident(staff, second), reason="FALSE_POSITIVE")

            trial = (await officer.data(TRIAL))["modelTrial"]
            assert (trial["productionModel"], trial["endedAt"]) == (FIRST, None)
            assert (trial["productionFrames"], trial["candidateFrames"]) == (4, 4)
            (pothole,) = trial["categories"]
            assert pothole == {
                "category": "POTHOLE",
                "both": 1,
                "productionOnly": 2,
                "candidateOnly": 1,
                "agreement": 0.25,
                "production": {
                    "detections": 3,
                    "confirmed": 1,
                    "rejected": 1,
                    "pending": 1,
                    "precision": 0.5,
                },
                # Judged where it named what production did: the confirmed one.
                "candidate": {
                    "detections": 1,
                    "confirmed": 1,
                    "rejected": 0,
                    "pending": 0,
                    "precision": 1.0,
                },
            }
            # Another bureau's staff see none of these frames, so none of the comparison.
            other = GraphQLClient(
                graph,
                graph_tokens.custom(subject="epb-staff", kind="staff",
                                    bureau="ENVIRONMENTAL_PROTECTION", scopes=["incidents:read"]),
            )  # fmt: skip
            theirs = (await other.data(TRIAL))["modelTrial"]
            assert (theirs["productionFrames"], theirs["categories"]) == (0, [])

            # Ended: the next frame is production's alone.
            ended = (await officer.data(END, {"input": {"reason": "seen enough"}}))["endModelTrial"]
            assert ended["__typename"] == "ModelTrialEnded", ended
            assert ended["decision"]["ends"] == decision["id"]
            fake.scripts = {}
            last = await send(http, tokens, places[4], 9)

            async def done() -> bool:
                return bool(await analyses(owner, last))

            await until(done, "the frame after the trial analysed")
            await asyncio.sleep(0.5)  # a shadow's answer would be recorded with production's
            assert await analyses(owner, last) == [(FIRST, "PRODUCTION")]
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
    past = (await officer.data(TRIAL, {"id": decision["id"]}))["modelTrial"]
    assert past["endedAt"] is not None and past["productionFrames"] == 4
    assert (await officer.data(TRIAL))["modelTrial"] is None
    audited = await owner.fetch(
        "SELECT DISTINCT operation FROM audit_record WHERE $1 = ANY(resource_ids)"
        " AND subject = 'rdec-evaluator' AND occurred_at >= $2",
        f"ModelDecision:{decision['id']}",
        started_at,
    )
    assert {row["operation"] for row in audited} == {"Try", "End", "Trial"}


async def test_a_canary_past_its_bound_is_rolled_back_by_the_workers(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    officers: tuple[httpx.AsyncClient, TokenFactory],
    cameras: CameraFactory,
    owner: asyncpg.Connection,
    fake: FakeServing,
    settings_for: Callable[..., Settings],
) -> None:
    graph, graph_tokens = officers
    officer = GraphQLClient(graph, graph_tokens.named("rdec-evaluator"))
    staff = GraphQLClient(graph, graph_tokens.named("pwb-supervisor"))
    started = await start_trial(
        officer, role="CANARY", share=0.5, rejectedBound=0.5, minReviewed=2, reason="a tenth"
    )
    assert started["__typename"] == "ModelTrialStarted", started
    row = await owner.fetchrow(
        "SELECT * FROM model_decision WHERE id = $1", int(started["decision"]["id"])
    )
    trial = DecisionRecord(**{k: row[k] for k in DecisionRecord.__dataclass_fields__})
    fake.script.findings = [Said("POTHOLE", "hole", 0.9)]
    canary: list[str] = []
    production: list[str] = []
    settings = settings_for(fake.url, canary_check_seconds=0.2)
    async with vision_worker(settings) as worker:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop=stop))
        try:
            seed = 0
            places: list[Camera] = []
            while len(canary) < 2 or not production:
                seed += 1
                places.append(await cameras("POLICE", longitude=120.20 + 0.02 * seed))
                sha = await send(http, tokens, places[-1], seed)
                (canary if takes(trial, bytes.fromhex(sha)) else production).append(sha)

            async def analysed() -> bool:
                return all([await analyses(owner, s) for s in canary + production])

            await until(analysed, "every frame analysed")
            # Each frame analysed once, by the version the trial's draw gave it, for real.
            for sha in canary:
                assert await analyses(owner, sha) == [(SECOND, "CANARY")]
                assert await incident_of(owner, sha) is not None
            for sha in production:
                assert await analyses(owner, sha) == [(FIRST, "PRODUCTION")]
            assert await worker.check_canary() is None  # nobody has looked yet

            # People reject what the canary found: past the bound once two were reviewed.
            for sha in canary[:2]:
                key = await incident_of(owner, sha)
                assert key is not None
                await act(staff, "CLOSE", await read_incident(staff, key), reason="FALSE_POSITIVE")

            async def rolled_back() -> bool:
                return bool(await owner.fetchval(
                    "SELECT count(*) FROM model_decision WHERE ends = $1", trial.id
                ))  # fmt: skip

            await until(rolled_back, "the canary rolled back by the worker")
            ended = await owner.fetchrow("SELECT * FROM model_decision WHERE ends = $1", trial.id)
            assert ended["role"] == "TRIAL_ENDED"
            assert ended["decided_by"] == "system:canary-watch"
            assert "rejected 2 of the 2" in ended["reason"], ended["reason"]
            # Checked again (by this or another worker): ended once.
            assert await worker.check_canary() is None
            # What the canary would have taken goes to production now.
            seed += 1
            while True:
                seed += 1
                place = await cameras("POLICE", longitude=120.20 + 0.02 * seed)
                sha = await send(http, tokens, place, seed)
                if takes(trial, bytes.fromhex(sha)):
                    break

            async def after() -> bool:
                return bool(await analyses(owner, sha))

            await until(after, "the frame after the rollback analysed")
            assert await analyses(owner, sha) == [(FIRST, "PRODUCTION")]
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
    audited = await owner.fetch(
        "SELECT subject, operation, payload FROM audit_record WHERE $1 = ANY(resource_ids)"
        " AND occurred_at >= $2",
        f"ModelDecision:{ended['id']}",
        trial.decided_at,
    )
    assert [(r["subject"], r["operation"]) for r in audited] == [
        ("system:canary-watch", "watchCanary")
    ]
    assert "TRIAL_ENDED" in audited[0]["payload"]


async def test_the_cli_tries_compares_and_ends_a_candidate(
    database: DatabaseUnderTest, fake: FakeServing, owner: asyncpg.Connection, clean: None
) -> None:
    code, _, said = await models_cli(
        database, fake.url, "shadow", SECOND, "2027.01", "--share", "0.25", "--reason", "try it"
    )
    assert code == 0 and "SHADOW on 25% of the frames" in flat(said), said
    code, out, said = await models_cli(database, fake.url, "trial", "--json")
    assert code == 0, said
    assert "SHADOW lighthouse-tiny-vlm-b 2027.01 against lighthouse-tiny-vlm" in flat(said), said
    assert json.loads(out) == []  # nothing analysed yet
    # A canary without its bound, or a share past half: refused, nothing decided.
    code, _, said = await models_cli(
        database, fake.url, "canary", SECOND, "2027.01", "--reason", "x"
    )
    assert code != 0 and "--rejected-bound" in flat(said), said
    code, _, said = await models_cli(
        database, fake.url, "canary", SECOND, "2027.01", "--share", "0.9",
        "--rejected-bound", "0.3", "--reason", "x",
    )  # fmt: skip
    assert code != 0 and "share" in flat(said), said
    code, _, said = await models_cli(database, fake.url, "end-trial", "--reason", "enough")
    assert code == 0 and "ended" in flat(said), said
    roles = await owner.fetch("SELECT role, share, decided_by FROM model_decision ORDER BY id")
    assert [(r["role"], r["share"]) for r in roles] == [("SHADOW", 0.25), ("TRIAL_ENDED", None)]
    assert all(r["decided_by"].startswith("cli:") for r in roles)
    code, _, said = await models_cli(database, fake.url, "trial")
    assert code == 0 and "no trial is under way" in flat(said), said


def flat(text: str) -> str:
    """The console's words, without the line breaks it wraps them with."""
    return " ".join(text.split())
