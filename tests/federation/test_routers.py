"""Through a real federation router, the city's graph answers as the unified gateway does.

Every domain runs as its own subgraph process; Hive Gateway and Apollo Gateway plan each query
across them from the supergraph ``lighthouse supergraph`` composed. For principals of different
bureaus, a corpus of queries (cross-domain ones included) returns the same data through each
router as through the unified gateway. Neither router enforces the access directives, so what a
caller may see is decided by the subgraphs alone: the leak checks hold through them too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

import asyncpg
import httpx
import pytest

from api import bundled
from api.access.scope import AccessScope
from api.db.database import Database
from api.metrics import Metrics
from api.policy.engine import PolicyEngine
from api.repositories.vision import VisionRepository
from api.services.vision.pipeline import Bureau, worker_principal
from api.vision.store import FrameStore
from tests.conftest import gateway_env
from tests.federation.conftest import RouterProcess
from tests.policy.camera_frames import (
    MODEL,
    Camera,
    FrameDetection,
    frames_root,
    record_frame,
    register_prompt,
)
from tests.support import REPOSITORY, DatabaseUnderTest, GatewayProcess
from tests.tokens import TokenFactory

CORPUS = {
    # incident → asset → owning bureau; incident → category → responsible bureau: planned
    # across the incidents, assets and bureaus subgraphs.
    "Board": """
      query Board { incidents(first: 30) { edges { cursor node {
        id caseNumber title status dueAt reportedAt
        responsibleBureau { id code nameZh kind }
        asset { id code kind location { latitude longitude } bureau { code nameEn } }
        category { code nameEn slaHours responsibleBureau { code jointServiceCentre } }
        events(limit: 2) { kind toStatus occurredAt }
        workOrders { crew status bureau { code } }
      } } pageInfo { hasNextPage endCursor } } }
    """,
    "Register": """
      query Register { assets(first: 30) { totalCount edges { node {
        id code kind name bureau { code nameZh }
      } } } }
    """,
    "Reference": """
      query Reference { bureaus { id code nameEn kind }
        categories { code slaWorkingDays responsibleBureau { code } } }
    """,
    "Me": "query Me { me { subject kind bureauCode roles scopes } }",
    # detection → incident (models → incidents), detection → camera → bureau (models → assets →
    # bureaus), incident → its detections (incidents → models).
    "Evidence": """
      query Evidence { detections(first: 20) { edges { node {
        id confidence outcome category { code }
        incident { id title responsibleBureau { code } detections { id } }
        frame { sha256 status camera { code bureau { code } } }
      } } } }
    """,
    # licence → model (licensing → models) → detections → incident (models → incidents).
    "Licensed": """
      query Licensed { licences { code models visionModels { name
        versions { version }
        detections(first: 10) { totalCount edges { node { id confidence
          incident { id title responsibleBureau { code } } } } } } } }
    """,
    "Mixed": """
      query Mixed { me { subject } bureau(code: "POLICE") { code nameEn }
        incidents(first: 5, orderBy: DUE_SOONEST) { edges { node { id dueAt
          responsibleBureau { code } } } } }
    """,
}
PRINCIPALS = [
    "city-viewer", "pwb-supervisor", "police-viewer", "epb-supervisor", "auditor", "city-analyst",
]  # fmt: skip


def _token(tokens: TokenFactory, principal: str) -> str:
    if principal == "city-analyst":
        # City staff who read incidents and the licences' use: licence → model → detections.
        return tokens.custom(
            subject="city-analyst", kind="staff", roles=["city_viewer"],
            scopes=["incidents:read", "usage:read"],
        )  # fmt: skip
    return tokens.named(principal)


@pytest.fixture(scope="module")
def seeded(database: DatabaseUnderTest, gateway: GatewayProcess) -> None:
    """The demo data, and camera frames whose detections joined incidents of the cameras'
    bureau."""
    env = {**os.environ, **gateway_env(database), "LIGHTHOUSE_ENVIRONMENT": "test"}
    subprocess.run(
        [sys.executable, "-m", "api.cli", "seed", "--assets", "80", "--incidents", "120",
         "--random-seed", "11", "--reset"],
        cwd=REPOSITORY, env=env, check=True, capture_output=True,
    )  # fmt: skip
    asyncio.run(_record_frames(database, gateway))
    licensing = [sys.executable, "-m", "api.cli", "licensing"]
    tag = uuid.uuid4().hex[:8]
    for arguments in (
        ["add-licensee", f"fed-{tag}", "--company", "Harbour Vision Ltd.",
         "--tax-id", f"{int(tag, 16) % 10**8:08d}", "--contact", "Chen Yu <yu@harbour.example>"],
        ["add-licence", f"LIC-FED-{tag.upper()}", "--licensee", f"fed-{tag}",
         "--model", MODEL[0], "--model", "another-model", "--purpose", "harbour-safety",
         "--description", "harbour safety analytics",
         "--from", "2026-01-01T00:00+08:00", "--until", "2099-01-01T00:00+08:00"],
    ):  # fmt: skip
        subprocess.run(
            [*licensing, *arguments], cwd=REPOSITORY, env=env, check=True, capture_output=True
        )


async def _record_frames(database: DatabaseUnderTest, gateway: GatewayProcess) -> None:
    owner = await asyncpg.connect(database.owner_url)
    try:
        # The bureau with the most cameras records frames from three of them.
        bureau = await owner.fetchrow(
            "SELECT b.id, b.code FROM lighthouse.bureau AS b JOIN lighthouse.asset AS a"
            " ON a.bureau_id = b.id AND a.kind = 'CAMERA'"
            " GROUP BY b.id, b.code ORDER BY count(*) DESC, b.id LIMIT 1"
        )
        assert bureau is not None, "the seed places cameras"
        cameras = await owner.fetch(
            "SELECT id, latitude, longitude FROM lighthouse.asset"
            " WHERE kind = 'CAMERA' AND bureau_id = $1 ORDER BY id LIMIT 3",
            bureau["id"],
        )
        bureaus = await owner.fetch("SELECT code, joint_service_centre FROM lighthouse.bureau")
        # One incident per category: an analysis finds each category once.
        incidents = await owner.fetch(
            "SELECT DISTINCT ON (category) id, category FROM lighthouse.incident"
            " WHERE responsible_bureau_id = $1 ORDER BY category, id LIMIT 6",
            bureau["id"],
        )
    finally:
        await owner.close()
    assert cameras and incidents, f"the seed gives {bureau['code']} cameras and incidents"
    engine = PolicyEngine(
        bundled.directory("policies"), [(b["code"], b["joint_service_centre"]) for b in bureaus]
    )
    worker = worker_principal(Bureau(bureau["id"], bureau["code"]))
    store = FrameStore(frames_root(gateway))
    async with database.app_pool(max_size=2) as pool:
        handle = Database(pool, Metrics().record_statements)
        for step in (register_prompt, _register_model, *(
            partial(_frame, store, Camera(c["id"], c["latitude"], c["longitude"]), incidents)
            for c in cameras
        )):  # fmt: skip
            async with handle.unit_of_work(worker.database_settings(), lambda: "test") as uow:
                await step(AccessScope(worker, "federation-test", uow, engine))


async def _register_model(access: AccessScope) -> None:
    await VisionRepository(access.uow).register_use(*MODEL)


async def _frame(
    store: FrameStore, camera: Camera, incidents: list[asyncpg.Record], access: AccessScope
) -> None:
    detections = [FrameDetection(i["category"], i["id"]) for i in incidents[camera.id % 3 :][:2]]
    await record_frame(access, store, camera, datetime.now(UTC), detections)


def _post(url: str, query: str, token: str | None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = httpx.post(url, json={"query": query}, headers=headers, timeout=60)
    body: dict[str, Any] = answer.json()
    return body


def _denied(body: dict[str, Any]) -> bool:
    return bool(body.get("errors")) and not any(
        (body.get("data") or {}).get(field) for field in ("incidents", "assets", "auditRecords")
    )


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_router_answers_as_the_unified_gateway(
    seeded: None,
    routers: list[RouterProcess],
    gateway: GatewayProcess,
    tokens: TokenFactory,
    name: str,
) -> None:
    query = CORPUS[name]
    compared = 0
    for principal in PRINCIPALS:
        token = _token(tokens, principal)
        unified = _post(f"{gateway.base_url}/graphql", query, token)
        for router in routers:
            routed = _post(router.url, query, token)
            context = f"{name} as {principal} through {router.name}"
            if unified.get("errors"):
                # Refused by the unified gateway, in whole or in part (a field the caller may
                # not read): refused through the router, with the same data besides.
                assert routed.get("errors"), context
                assert (routed.get("data") or None) == (unified.get("data") or None), context
                continue
            assert "errors" not in routed, (context, routed.get("errors"))
            assert routed["data"] == unified["data"], context
            compared += 1
    assert compared >= len(PRINCIPALS), f"{name}: too few answers compared ({compared})"


def test_the_board_really_crosses_subgraphs(
    seeded: None, routers: list[RouterProcess], gateway: GatewayProcess, tokens: TokenFactory
) -> None:
    data = _post(routers[0].url, CORPUS["Board"], tokens.named("city-viewer"))["data"]
    nodes = [edge["node"] for edge in data["incidents"]["edges"]]
    assert len(nodes) == 30
    # Fields only the assets and bureaus subgraphs can resolve came back.
    assert any(node["asset"] and node["asset"]["bureau"]["nameEn"] for node in nodes)
    assert all(node["responsibleBureau"]["nameZh"] for node in nodes)
    # detection → incident: the models subgraph, then the incidents subgraph.
    evidence = _post(routers[0].url, CORPUS["Evidence"], tokens.named("city-viewer"))["data"]
    found = [edge["node"] for edge in evidence["detections"]["edges"]]
    assert found and all(node["incident"]["title"] for node in found)
    assert len({node["frame"]["camera"]["bureau"]["code"] for node in found}) == 1
    # licence → model → detections: licensing, models and incidents.
    licensed = _post(routers[1].url, CORPUS["Licensed"], _token(tokens, "city-analyst"))["data"]
    models = {
        model["name"]: model for licence in licensed["licences"]
        for model in licence["visionModels"]
    }  # fmt: skip
    assert models[MODEL[0]]["versions"] == [{"version": MODEL[1]}]
    assert models[MODEL[0]]["detections"]["totalCount"] >= len(found)
    assert models["another-model"]["detections"]["totalCount"] == 0


@pytest.mark.parametrize(
    "caller",
    ["anonymous", "no-scopes", "licensee", "police-viewer"],
)
def test_a_router_that_enforces_nothing_leaks_nothing(
    seeded: None,
    routers: list[RouterProcess],
    gateway: GatewayProcess,
    tokens: TokenFactory,
    caller: str,
) -> None:
    token = {
        "anonymous": None,
        "no-scopes": tokens.custom(subject="nobody", kind="service", scopes=[]),
        "licensee": tokens.custom(
            subject="acme-client", kind="licensee", scopes=["inference:invoke"]
        ),
        "police-viewer": tokens.named("police-viewer"),
    }[caller]
    for router in routers:
        board = _post(router.url, CORPUS["Board"], token)
        unified = _post(f"{gateway.base_url}/graphql", CORPUS["Board"], token)
        context = f"{caller} through {router.name}"
        if caller == "police-viewer":
            # Row-level security in the subgraph, not the router, decides what a bureau's
            # viewer sees: the same incidents as through the unified gateway, fewer than the
            # city-wide viewer's.
            # (The errors say which subgraph's answer went missing, if one did.)
            assert board.get("data") == unified.get("data"), (
                context,
                board.get("errors"),
                unified.get("errors"),
            )
            count = "query Count { incidents(first: 1) { totalCount } }"
            seen = _post(router.url, count, token)["data"]["incidents"]["totalCount"]
            everyone = _post(router.url, count, tokens.named("city-viewer"))["data"]
            assert (
                seen
                == _post(f"{gateway.base_url}/graphql", count, token)["data"]["incidents"][
                    "totalCount"
                ]
            ), context
            assert 0 < seen < everyone["incidents"]["totalCount"], context
            continue
        assert board.get("errors") and unified.get("errors"), context
        assert not (board.get("data") or {}).get("incidents"), context
        audit = _post(
            router.url, "query A { auditRecords(first: 5) { edges { node { seq } } } }", token
        )
        assert audit.get("errors") and not (audit.get("data") or {}).get("auditRecords"), context
