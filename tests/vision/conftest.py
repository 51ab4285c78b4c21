"""Cameras, frame uploads and vision workers for the vision tests."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from api.settings import (
    DatabaseSettings,
    ServingSettings,
    Settings,
    VisionSettings,
)
from api.vision.worker import VisionWorker, vision_worker
from tests.support import DatabaseUnderTest

_codes = itertools.count(1)


@dataclass(frozen=True)
class Camera:
    id: int
    code: str
    bureau: str
    latitude: float
    longitude: float


CameraFactory = Callable[..., Any]


@pytest.fixture
async def cameras(owner: asyncpg.Connection, clean: None) -> CameraFactory:
    """Makes cameras: ``await cameras("POLICE", latitude=..., longitude=...)``."""

    async def make(
        bureau: str = "POLICE", latitude: float = 22.6273, longitude: float = 120.3014
    ) -> Camera:
        code = f"CAM-T{next(_codes):05d}"
        camera_id = await owner.fetchval(
            "INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
            " SELECT $1, 'CAMERA', $1, id, $3, $4, 'tests' FROM bureau WHERE code = $2"
            " RETURNING id",
            code, bureau, latitude, longitude,
        )  # fmt: skip
        return Camera(camera_id, code, bureau, latitude, longitude)

    return make


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


async def post_frame(
    http: httpx.AsyncClient,
    token: str,
    camera: str,
    data: bytes,
    captured_at: str | None = None,
    content_type: str = "image/jpeg",
) -> httpx.Response:
    return await http.post(
        "/frames",
        params={"camera": camera, "capturedAt": captured_at or now_iso()},
        content=data,
        headers={"authorization": f"Bearer {token}", "content-type": content_type},
    )


UPLOAD_FRAME = """
mutation Upload($file: Upload!, $camera: ID!, $at: DateTime!) {
  uploadFrame(file: $file, camera: $camera, capturedAt: $at) {
    __typename
    ... on FrameUploaded { replayed frame { id sha256 status mediaType width height } }
    ... on Error { message code }
    ... on FrameRejected { reason }
  }
}
"""


async def graphql_upload(
    http: httpx.AsyncClient,
    token: str,
    document: str,
    variables: dict[str, Any],
    data: bytes,
    *,
    preflight: bool = True,
    filename: str = "frame.jpg",
) -> httpx.Response:
    """A GraphQL multipart request (the spec's operations, map and one file)."""
    operations = {"query": document, "variables": {**variables, "file": None}}
    headers = {"authorization": f"Bearer {token}"}
    if preflight:
        headers["GraphQL-Require-Preflight"] = "1"
    return await http.post(
        "/graphql",
        data={
            "operations": orjson.dumps(operations).decode(),
            "map": orjson.dumps({"0": ["variables.file"]}).decode(),
        },
        files={"0": (filename, data, "application/octet-stream")},
        headers=headers,
    )


def worker_settings(
    database: DatabaseUnderTest,
    frames_dir: Path,
    serving_url: str,
    secret_file: Path | None = None,
    **vision: Any,
) -> Settings:
    return Settings(
        database=DatabaseSettings(url=database.app_url, owner_url=database.owner_url),
        serving=ServingSettings(
            url=serving_url, secret_file=secret_file, retries=0, timeout_seconds=30
        ),
        vision=VisionSettings(frames_dir=frames_dir, **vision),
    )


@pytest.fixture
def settings_for(database: DatabaseUnderTest, frames_dir: Path) -> Callable[..., Settings]:
    """A vision worker's settings, given its serving tier's URL (and vision settings)."""

    def make(url: str, **vision: Any) -> Settings:
        return worker_settings(database, frames_dir, url, **vision)

    return make


@asynccontextmanager
async def started_worker(settings: Settings) -> AsyncIterator[VisionWorker]:
    async with vision_worker(settings) as worker:
        yield worker


async def frame_rows(owner: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await owner.fetch("SELECT encode(sha256, 'hex') AS sha, status FROM frame ORDER BY id")
    return [dict(row) for row in rows]


async def queue_rows(owner: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await owner.fetch(
        "SELECT status::text AS status, attempts, dedupe_key FROM pgqueuer ORDER BY id"
    )
    return [dict(row) for row in rows]
