"""Camera frames and detections in the graph: frames sent in (GraphQL multipart request spec),
read with their analysis status, detections listed and filtered, and detections live."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.file_uploads import Upload

from api.access.scope import OperationDescription
from api.domain.errors import DomainError, Forbidden, InvalidInput, Unauthenticated
from api.graph.core import errors
from api.graph.core.connections import build_connection
from api.graph.core.context import Info
from api.graph.core.ids import decode_id, decode_ids, decode_key
from api.graph.core.prefetch import node_selections, prefetch
from api.graph.core.uploads import read_upload
from api.graph.models.detections import (
    Detection,
    DetectionConnection,
    DetectionOutcome,
    Frame,
    FrameConnection,
)
from api.graph.models.loaders import DetectionById, FrameBySha
from api.repositories.sql import Ordering, page_request
from api.repositories.vision import (
    DETECTIONS_MOST_CONFIDENT_FIRST,
    DETECTIONS_NEWEST_FIRST,
    FRAMES_NEWEST_FIRST,
    DetectionFilter,
)
from api.services.vision import intake
from api.services.vision.intake import FrameIntake, FrameUpload
from api.services.vision.reads import VisionReads
from api.vision.store import parse_digest


@strawberry.input
class DetectionFilterInput:
    category: list[str] | None = None
    bureau: list[strawberry.ID] | None = strawberry.field(
        default=None, description="The cameras' bureaus, by ID."
    )
    camera: list[strawberry.ID] | None = None
    outcome: list[DetectionOutcome] | None = None
    min_confidence: float | None = None
    detected_from: datetime | None = strawberry.field(default=None, description="Inclusive.")
    detected_before: datetime | None = strawberry.field(default=None, description="Exclusive.")
    model: list[str] | None = strawberry.field(
        default=None, description="The models whose analyses found them, by name."
    )
    awaiting_review: bool | None = strawberry.field(
        default=None,
        description="Only those whose incident still waits for a person to decide (DETECTED), "
        "or (false) only the others.",
    )


@strawberry.enum
class DetectionOrder(Enum):
    NEWEST_FIRST = "NEWEST_FIRST"
    MOST_CONFIDENT_FIRST = "MOST_CONFIDENT_FIRST"


DETECTION_ORDERINGS: dict[DetectionOrder, Ordering] = {
    DetectionOrder.NEWEST_FIRST: DETECTIONS_NEWEST_FIRST,
    DetectionOrder.MOST_CONFIDENT_FIRST: DETECTIONS_MOST_CONFIDENT_FIRST,
}


def detection_filter(
    value: DetectionFilterInput | None, models: list[str] | None = None
) -> DetectionFilter:
    if value is None:
        return DetectionFilter(models=models)
    if models is not None and value.model is not None:
        models = [model for model in value.model if model in models]
    elif value.model is not None:
        models = value.model
    if value.min_confidence is not None and not 0 <= value.min_confidence <= 1:
        raise InvalidInput("filter.minConfidence", "must be between 0 and 1")
    for name, moment in (
        ("detectedFrom", value.detected_from),
        ("detectedBefore", value.detected_before),
    ):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"filter.{name}", "must include a time zone offset")
    return DetectionFilter(
        categories=value.category,
        bureau_ids=decode_ids(value.bureau, "Bureau", "filter.bureau"),
        camera_ids=decode_ids(value.camera, "Asset", "filter.camera"),
        outcomes=[o.value for o in value.outcome] if value.outcome is not None else None,
        min_confidence=value.min_confidence,
        detected_from=value.detected_from,
        detected_before=value.detected_before,
        models=models,
        awaiting_review=value.awaiting_review,
    )


async def detections_connection(
    info: Info,
    where: DetectionFilter,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    ordering: Ordering = DETECTIONS_NEWEST_FIRST,
) -> DetectionConnection:
    """A page of the detections ``where`` selects, as a connection (the caller's read)."""
    settings = info.context.resources.settings
    request = page_request(
        ordering,
        first=first,
        after=after,
        last=last,
        before=before,
        default_size=min(20, settings.graph.max_page_size),
        max_size=settings.graph.max_page_size,
    )
    reads = VisionReads(info.context.access)
    page = await reads.detections_page(where, request, ordering)
    DetectionById.of(info).prime_many({record.id: record for record in page.items})
    await prefetch(info, "Detection", page.items, "edges", "node")
    edge_fields = {field.name for field in node_selections(info, "edges")}
    return build_connection(
        DetectionConnection,
        page,
        ordering,
        Detection.from_record,
        lambda: reads.detections_count(where),
        edge_cursors="cursor" in edge_fields,
    )


@strawberry.type
class FrameQueries:
    @strawberry.federation.field(
        description="Camera frames, newest first, with their analysis status.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def frames(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        camera: list[strawberry.ID] | None = None,
    ) -> FrameConnection:
        settings = info.context.resources.settings
        request = page_request(
            FRAMES_NEWEST_FIRST,
            first=first,
            after=after,
            last=last,
            before=before,
            default_size=min(20, settings.graph.max_page_size),
            max_size=settings.graph.max_page_size,
        )
        cameras = decode_ids(camera, "Asset", "camera")
        reads = VisionReads(info.context.access)
        page = await reads.frames_page(cameras, request)
        FrameBySha.of(info).prime_many({record.sha256: record for record in page.items})
        await prefetch(info, "Frame", page.items, "edges", "node")
        edge_fields = {field.name for field in node_selections(info, "edges")}
        return build_connection(
            FrameConnection,
            page,
            FRAMES_NEWEST_FIRST,
            Frame.from_record,
            lambda: reads.frames_count(cameras),
            edge_cursors="cursor" in edge_fields,
        )

    @strawberry.federation.field(
        description="One frame by its ID; null if it does not exist (or you may not see it).",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def frame(self, info: Info, id: strawberry.ID) -> Frame | None:
        digest = parse_digest(decode_key(id, "Frame", "id"))
        if digest is None:
            raise InvalidInput("id", f"{id!r} is not an ID this API issued")
        record = await FrameBySha.of(info).load(digest)
        return Frame.from_record(record) if record else None

    @strawberry.federation.field(
        description="Detections, newest first (or the most confident first: a review queue); "
        "filter by category, bureau, camera, outcome, confidence, time and whether their "
        "incident awaits review.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def detections(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: DetectionFilterInput | None = None,
        order_by: DetectionOrder = DetectionOrder.NEWEST_FIRST,
    ) -> DetectionConnection:
        return await detections_connection(
            info,
            detection_filter(filter),
            first,
            after,
            last,
            before,
            DETECTION_ORDERINGS[order_by],
        )


@strawberry.type
class FrameUploaded:
    frame: Frame
    replayed: bool = strawberry.field(
        description="True when these exact pixels had been sent before: nothing new was stored "
        "or queued."
    )


UploadFrameResult = Annotated[
    FrameUploaded | errors.FrameRejected | errors.InvalidInput | errors.NotFound | errors.Forbidden,
    strawberry.union("UploadFrameResult"),
]


@strawberry.type
class FrameMutations:
    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Send a camera frame (GraphQL multipart request: the image as `file`; "
        "JPEG or PNG, checked by its content, stored without its metadata) to be analysed. "
        "Send the header `GraphQL-Require-Preflight: 1` with it.",
    )
    async def upload_frame(
        self,
        info: Info,
        file: Upload,
        camera: strawberry.ID,
        captured_at: datetime,
    ) -> UploadFrameResult:
        context = info.context
        vision = context.resources.vision
        try:
            settings = context.resources.settings.vision
            if not intake.may_upload(context.resources.policy, context.principal):
                raise Forbidden("this caller may not send frames (a bureau's incidents:write)")
            data = await read_upload(file, settings.max_frame_bytes)
            upload = FrameUpload(data, decode_id(camera, "Asset", "camera"), captured_at)
            # Checked holding no connection: an image may wait its turn to decode.
            async with context.released():
                checked = await intake.check(upload, settings, vision.decoding)
            record, replayed = await FrameIntake(context.access, vision.store).accept(checked)
        except DomainError as error:
            context.audit.outcome = error.code
            return errors.to_graphql(error)  # type: ignore[return-value]
        return FrameUploaded(frame=Frame.from_record(record), replayed=replayed)


def _detection_event() -> OperationDescription:
    return OperationDescription(
        category="subscription-event", name="detectionAdded", kind="subscription"
    )


@strawberry.type
class DetectionSubscriptions:
    @strawberry.subscription(
        description="Detections as the vision workers record them, in any process; only those "
        "you may see (each is re-read under your identity)."
    )
    async def detection_added(
        self,
        info: Info,
        category: list[str] | None = None,
        bureau: list[strawberry.ID] | None = None,
    ) -> AsyncGenerator[Detection, None]:
        categories = set(category or ())
        bureau_ids = set(decode_ids(bureau, "Bureau", "bureau") or ())
        context = info.context
        principal = context.principal
        async with context.resources.changes.detections() as notices:
            async for notice in notices:
                if categories and notice.category not in categories:
                    continue
                if bureau_ids and notice.bureau_id not in bureau_ids:
                    continue
                if principal.expires_at is not None and principal.expires_at < time.time():
                    raise Unauthenticated("the access token has expired; reconnect with a new one")
                async with context.event_scope(_detection_event) as scope:
                    record = await scope.loaders.get(DetectionById).load(notice.detection_id)
                    if record is None:
                        # Not visible to this subscriber (row-level security): nothing to send.
                        scope.access.audit.silent = True
                        continue
                    yield Detection.from_record(record)
