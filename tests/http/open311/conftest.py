"""What the Open311 tests share: API keys issued as the city issues them, incidents reported
through the graph, and a camera frame recorded as evidence of an incident."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from api import bundled
from api.access.scope import AccessScope
from api.auth.api_keys import digest, new_key
from api.db.database import Database
from api.metrics import Metrics
from api.policy.engine import PolicyEngine
from api.repositories.open311 import Open311Clients
from api.services.vision.pipeline import Bureau, worker_principal
from api.vision.store import FrameStore
from tests.graph.assets.test_mutations import register
from tests.graph.helpers import bureau_ids, key_of
from tests.policy.camera_frames import (
    Camera,
    FrameDetection,
    RecordedFrame,
    frames_root,
    record_frame,
    register_prompt,
)
from tests.support import DatabaseUnderTest, GatewayProcess, GraphQLClient

BASE = "/open311/v2"
FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
IssueKey = Callable[..., Awaitable[str]]


@pytest.fixture
def issue_key(owner: asyncpg.Connection) -> IssueKey:
    """Issue an app a key, as ``lighthouse open311 issue-key`` does (the CLI's own test runs
    the command); each app gets a name of its own."""

    async def issue(bureau: str = "RDEC", *, submit: bool = True) -> str:
        key = new_key()
        name = f"app-{bureau.lower()}-{uuid.uuid4().hex[:8]}"
        await Open311Clients(owner).issue(name, digest(key), bureau, submit, "test")
        return key

    return issue


async def audit_records(
    owner: asyncpg.Connection, operation: str, key: str
) -> list[asyncpg.Record]:
    """The audit records of ``operation`` by the app holding ``key``."""
    client_id = await owner.fetchval(
        "SELECT id FROM lighthouse.open311_client WHERE key_digest = $1", digest(key)
    )
    return await owner.fetch(
        "SELECT subject, operation, decision, resource_ids, payload FROM lighthouse.audit_record"
        " WHERE operation = $1 AND subject = $2 ORDER BY seq",
        operation,
        f"open311:{client_id}",
    )


async def evidence_frame(
    client: GraphQLClient,
    database: DatabaseUnderTest,
    gateway: GatewayProcess,
    incident_id: int,
) -> RecordedFrame:
    """A Public Works camera's frame, analysed, whose detection names ``incident_id``."""
    bureaus = await bureau_ids(client)
    created = await register(
        client, bureaus["PUBLIC_WORKS"], code=f"PWB-CAM-{uuid.uuid4().hex[:6]}"
    )
    camera_id = key_of(created["asset"]["id"])
    location = created["asset"]["location"]
    async with database.app_pool(max_size=1) as pool:
        bureau_id = await pool.fetchval(
            "SELECT id FROM lighthouse.bureau WHERE code = 'PUBLIC_WORKS'"
        )
        rows = await pool.fetch("SELECT code, joint_service_centre FROM lighthouse.bureau")
        engine = PolicyEngine(
            bundled.directory("policies"), [(r["code"], r["joint_service_centre"]) for r in rows]
        )
        worker = worker_principal(Bureau(bureau_id, "PUBLIC_WORKS"))
        handle = Database(pool, Metrics().record_statements)
        camera = Camera(camera_id, location["latitude"], location["longitude"])
        store = FrameStore(frames_root(gateway))
        async with handle.unit_of_work(worker.database_settings(), lambda: "test") as uow:
            access = AccessScope(worker, "open311-test", uow, engine)
            await register_prompt(access)
            frame: RecordedFrame = await record_frame(
                access, store, camera, datetime.now(UTC), [FrameDetection("POTHOLE", incident_id)]
            )
    return frame


def only(body: list[dict[str, Any]]) -> dict[str, Any]:
    assert isinstance(body, list) and len(body) == 1, body
    return body[0]
