"""Taking a camera frame in: checked, stripped of metadata, stored once, recorded and queued for
analysis in one transaction."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.access.scope import AccessScope
from api.domain.errors import Forbidden, FrameRejected, InvalidInput, NotFound
from api.policy import resources
from api.repositories.bureaus import BureauRepository
from api.repositories.vision import FrameRecord, VisionRepository, payload
from api.settings import VisionSettings
from api.vision import images
from api.vision.store import FrameStore

ANALYSE = "analyse_frame"
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_AGE = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class FrameUpload:
    data: bytes
    camera_id: int
    captured_at: datetime


class FrameIntake:
    def __init__(self, access: AccessScope, store: FrameStore, settings: VisionSettings) -> None:
        self._access = access
        self._store = store
        self._settings = settings
        self._frames = VisionRepository(access.uow)
        self._bureaus = BureauRepository(access.uow)

    async def accept(self, upload: FrameUpload) -> tuple[FrameRecord, bool]:
        """The frame recorded (and queued), and whether it had been sent before. Every refusal
        leaves nothing behind: nothing is written before every check has passed."""
        bureau_id = await self._frames.camera_bureau(upload.camera_id)
        if bureau_id is None:
            raise NotFound("camera", upload.camera_id)
        bureau = (await self._bureaus.by_ids([bureau_id]))[bureau_id]
        self._access.authorize("UploadFrame", resources.bureau(bureau.code))
        if self._access.principal.bureau_id != bureau_id:
            raise Forbidden("the camera belongs to another bureau; send its frames from there")
        captured_at = upload.captured_at
        now = datetime.now(UTC)
        if captured_at.tzinfo is None:
            raise InvalidInput("capturedAt", "must include a time zone offset")
        if captured_at > now + MAX_CLOCK_SKEW:
            raise InvalidInput("capturedAt", "is in the future")
        if captured_at < now - MAX_AGE:
            raise InvalidInput("capturedAt", "is more than 30 days ago")
        try:
            clean = await asyncio.to_thread(
                images.clean,
                upload.data,
                max_bytes=self._settings.max_frame_bytes,
                max_pixels=self._settings.max_frame_pixels,
            )
        except images.ImageRejected as rejected:
            raise FrameRejected(rejected.code, rejected.reason) from None
        digest = await asyncio.to_thread(self._store.put, clean.data, clean.media_type)
        async with self._access.uow.savepoint():
            record = await self._frames.add_frame(
                digest,
                upload.camera_id,
                bureau_id,
                clean.media_type,
                len(clean.data),
                clean.width,
                clean.height,
                captured_at,
                self._access.principal.subject,
            )
            replayed = record is None
            if record is None:
                record = (await self._frames.frames([digest]))[digest]
            else:
                await self._frames.enqueue(ANALYSE, payload(digest, bureau_id), digest.hex())
        self._access.audit.saw("Frame", record.key)
        return record, replayed
