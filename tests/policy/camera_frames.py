"""Camera frames for the agreement test's worlds, recorded as the vision worker records them: the
image in the gateway's frame store, then the frame, an analysis and its detections in one
transaction under the worker's identity for the camera's bureau (the application role, with
row-level security on). The detections name the incidents they opened or joined directly, so
that a world decides which incidents a frame is evidence of (the worker's ingest would decide
that by thresholds and distance)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image

from api.access.scope import AccessScope
from api.repositories.vision import DedupWindow, NewAnalysis, NewDetection, VisionRepository
from api.vision.store import FrameStore
from tests.support import GatewayProcess

MEDIA_TYPE = "image/png"
SIZE = (2, 2)
MODEL = ("agreement-model", "1")
PROMPT = "agreement"  # the version of the prompt the analyses name (no model is asked)


@dataclass(frozen=True, slots=True)
class Camera:
    id: int  # the asset
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class FrameDetection:
    category: str
    incident: int | None  # the incident it opened or joined; None: below the threshold


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    sha256: bytes
    image: bytes
    detections: dict[int, int | None]  # detection id → the incident it names

    @property
    def key(self) -> str:
        return self.sha256.hex()


def frames_root(gateway: GatewayProcess) -> Path:
    """Where the session's gateway reads frames from: tests/conftest.py sets it in the gateway's
    environment, and GatewayProcess keeps that environment only privately."""
    return Path(gateway._env["LIGHTHOUSE_VISION_FRAMES_DIR"])


async def register_prompt(access: AccessScope) -> None:
    """Enter the analyses' prompt in the registry (once per database; again is a no-op)."""
    await VisionRepository(access.uow).register_prompt(PROMPT, "What is in this frame?", {})


def tiny_png() -> bytes:
    """A real PNG of a few random pixels: a frame of its own (by its SHA-256) every time."""
    out = io.BytesIO()
    Image.frombytes("RGB", SIZE, os.urandom(SIZE[0] * SIZE[1] * 3)).save(out, format="PNG")
    return out.getvalue()


async def record_frame(
    access: AccessScope,
    store: FrameStore,
    camera: Camera,
    captured_at: datetime,
    detections: list[FrameDetection],
) -> RecordedFrame:
    """Store a new image and record it as a frame of ``camera`` (of the acting worker's
    bureau); with ``detections``, an analysis that found them."""
    bureau_id = access.principal.bureau_id
    assert bureau_id is not None, "the vision worker acts for a bureau"
    image = tiny_png()
    digest = store.put(image, MEDIA_TYPE)
    repository = VisionRepository(access.uow)
    frame = await repository.add_frame(
        digest, camera.id, bureau_id, MEDIA_TYPE, len(image), *SIZE, captured_at, "agreement"
    )
    assert frame is not None, "a new image is a new frame"
    if not detections:
        return RecordedFrame(digest, image, {})  # still waiting for its analysis
    analyses = await repository.add_analyses(
        *MODEL, PROMPT, [NewAnalysis(digest, bureau_id, "FINDINGS", None, "{}", 0)]
    )
    analysis = analyses[digest]  # a new frame has no analysis yet
    records = await repository.add_detections(
        [
            NewDetection(
                analysis_id=analysis.id,
                frame_sha256=digest,
                camera_id=camera.id,
                bureau_id=bureau_id,
                category=detection.category,
                confidence=0.9 if detection.incident is not None else 0.2,
                note="agreement",
                latitude=camera.latitude,
                longitude=camera.longitude,
                outcome="ATTACHED" if detection.incident is not None else "BELOW_THRESHOLD",
                incident_id=detection.incident,
            )
            for detection in detections
        ],
        DedupWindow(meters=50, seconds=24 * 3600),
    )
    # (The frame's status stays QUEUED: no rule looks at it.)
    return RecordedFrame(digest, image, {d.id: d.incident_id for d in records})
