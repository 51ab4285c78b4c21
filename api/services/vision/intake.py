"""Taking a camera frame in: checked, stripped of metadata, recorded and queued for analysis in
one transaction, and stored once.

The image reaches the frame store only after its row has been accepted (the policies and
row-level security both let the caller record it), and before the transaction commits: a
refused upload leaves nothing in the store, and a frame acknowledged to its camera has its image
on disk. (A commit that fails after the write leaves an image no row names: harmless, and the
same bytes sent again reuse it.)"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.access.scope import AccessScope
from api.auth.principal import Principal
from api.domain.errors import FrameRejected, InvalidInput, NotFound
from api.policy import resources
from api.policy.engine import PolicyEngine
from api.repositories.bureaus import BureauRepository
from api.repositories.vision import FrameRecord, VisionRepository, payload
from api.settings import VisionSettings
from api.vision import images
from api.vision.decoding import ImageDecoder
from api.vision.store import FrameStore

ANALYSE = "analyse_frame"
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_AGE = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class FrameUpload:
    """A frame from a camera, named by its asset ID or (camera gateways) its asset code."""

    data: bytes
    camera: int | str
    captured_at: datetime


@dataclass(frozen=True, slots=True)
class CheckedFrame:
    """A frame whose image passed the checks, re-encoded without its metadata."""

    image: images.CleanImage
    camera: int | str
    captured_at: datetime


def may_upload(policy: PolicyEngine, principal: Principal) -> bool:
    """Whether the caller may send frames at all (the rules let a bureau send its own cameras'
    only): asked before an upload is read or decoded, so that no one else can make the service
    spend its memory and processors on images."""
    if principal.bureau_code is None:
        return False
    return policy.decide(
        resources.principal_entity(principal),
        "UploadFrame",
        resources.bureau(principal.bureau_code),
        principal.scopes,
    ).allowed


async def check(
    upload: FrameUpload, settings: VisionSettings, decoding: ImageDecoder
) -> CheckedFrame:
    """The upload's own checks, which need no database: run them before a transaction opens
    (no connection is held while an image decodes), a few at a time (a large image takes its
    pixels' worth of memory)."""
    captured_at = upload.captured_at
    now = datetime.now(UTC)
    if captured_at.tzinfo is None:
        raise InvalidInput("capturedAt", "must include a time zone offset")
    if captured_at > now + MAX_CLOCK_SKEW:
        raise InvalidInput("capturedAt", "is in the future")
    if captured_at < now - MAX_AGE:
        raise InvalidInput("capturedAt", "is more than 30 days ago")
    if isinstance(upload.camera, str) and not 1 <= len(upload.camera) <= 64:
        raise InvalidInput("camera", "must be a camera's asset code (1 to 64 characters)")
    try:
        clean = await decoding.clean(
            upload.data, max_bytes=settings.max_frame_bytes, max_pixels=settings.max_frame_pixels
        )
    except images.ImageRejected as rejected:
        raise FrameRejected(rejected.code, rejected.reason) from None
    return CheckedFrame(clean, upload.camera, captured_at)


class FrameIntake:
    def __init__(self, access: AccessScope, store: FrameStore) -> None:
        self._access = access
        self._store = store
        self._frames = VisionRepository(access.uow)
        self._bureaus = BureauRepository(access.uow)

    async def accept(self, frame: CheckedFrame) -> tuple[FrameRecord, bool]:
        """The frame recorded (and queued), and whether these pixels had been sent before.
        Every refusal leaves nothing behind: the image is written to the store only once its
        row is accepted, and the row is taken back if the write fails."""
        camera_id = (
            frame.camera
            if isinstance(frame.camera, int)
            else await self._frames.camera_by_code(frame.camera)
        )
        bureau_id = await self._frames.camera_bureau(camera_id) if camera_id else None
        if camera_id is None or bureau_id is None:
            raise NotFound("camera", frame.camera)
        bureau = (await self._bureaus.by_ids([bureau_id]))[bureau_id]
        self._access.authorize("UploadFrame", resources.bureau(bureau.code))
        clean = frame.image
        digest = clean.sha256
        async with self._access.uow.savepoint():
            # Row-level security decides again (frame_create): a refusal is Forbidden, as the
            # policies' is, and nothing has been written.
            record = await self._frames.add_frame(
                digest,
                camera_id,
                bureau_id,
                clean.media_type,
                len(clean.data),
                clean.width,
                clean.height,
                frame.captured_at,
                self._access.principal.subject,
            )
            replayed = record is None
            if record is None:
                record = (await self._frames.frames([digest])).get(digest)
                if record is None or record.bureau_id != bureau_id:
                    # The same pixels, sent before from another bureau's camera (a blank frame
                    # from a broken camera, say): a frame is stored once, under its first camera.
                    raise FrameRejected(
                        "SENT_ELSEWHERE",
                        "this image was sent before from another bureau's camera; "
                        "check that the camera is working",
                    )
            else:
                # The image is on disk before its job is queued and the frame acknowledged; the
                # request that recorded these pixels first wrote them (before its commit), so a
                # replay has nothing to write.
                await asyncio.to_thread(self._store.put, clean.data, clean.media_type)
                await self._frames.enqueue(ANALYSE, payload(digest, bureau_id), digest.hex())
        self._access.audit.saw("Frame", record.key)
        return record, replayed
