"""Camera frames, their analyses by the vision models, and the detections they yield: the
discover step, served with the model registry as the models domain's subgraph. A detection
refers to the incident it opened or joined (the incidents domain's entity)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry import relay

from api.auth.image_grants import issue_image_link
from api.graph.assets.loaders import AssetById
from api.graph.assets.types import Asset
from api.graph.bureaus.loaders import BureauById, CategoryByCode
from api.graph.bureaus.types import Bureau, IncidentCategory
from api.graph.core.context import Info
from api.graph.core.geo import Location
from api.graph.core.ids import decode_id, decode_key
from api.graph.core.prefetch import related
from api.graph.incidents.loaders import IncidentById
from api.graph.incidents.types import Incident
from api.graph.models.loaders import AnalysesOf, DetectionById, DetectionsInFrame, FrameBySha
from api.repositories.vision import AnalysisRecord, DetectionRecord, FrameRecord
from api.services.vision.reads import VisionReads
from api.vision.store import parse_digest


@strawberry.enum(description="Where a frame is in its analysis.")
class FrameStatus(Enum):
    QUEUED = "QUEUED"
    ANALYSED = "ANALYSED"
    FAILED = "FAILED"


@strawberry.enum(description="What an analysis came to.")
class AnalysisOutcome(Enum):
    FINDINGS = "FINDINGS"
    NOTHING = "NOTHING"
    UNUSABLE = "UNUSABLE"


@strawberry.enum(description="What a detection did.")
class DetectionOutcome(Enum):
    OPENED = "OPENED"
    ATTACHED = "ATTACHED"
    BELOW_THRESHOLD = "BELOW_THRESHOLD"
    SHADOW = strawberry.enum_value(
        "SHADOW", description="A trial's candidate in shadow found it: it opened nothing."
    )


@strawberry.type(description="One analysis of a frame, by a model version with a prompt version.")
class FrameAnalysis:
    model: str
    model_version: str
    prompt_version: str
    outcome: AnalysisOutcome
    failure: str | None = strawberry.field(description="Why an UNUSABLE answer could not be used.")
    raw_answer: str = strawberry.field(description="The model's answer, as it came.")
    latency_ms: int
    analysed_at: datetime
    role: str = strawberry.field(
        description="PRODUCTION, CANARY (a trial's candidate, for real) or SHADOW (beside "
        "production, acting on nothing)."
    )

    @classmethod
    def from_record(cls, record: AnalysisRecord) -> FrameAnalysis:
        return cls(
            model=record.model,
            model_version=record.model_version,
            prompt_version=record.prompt_version,
            outcome=AnalysisOutcome(record.outcome),
            failure=record.failure,
            raw_answer=record.raw_answer,
            latency_ms=record.latency_ms,
            analysed_at=record.analysed_at,
            role=record.role,
        )


async def _analyses(root: Any, info: Info) -> list[FrameAnalysis]:
    records = await AnalysesOf.of(info).load(root.record.sha256)
    return [FrameAnalysis.from_record(record) for record in records]


async def _frame_detections(root: Any, info: Info) -> list[Detection]:
    records = await DetectionsInFrame.of(info).load(root.record.sha256)
    return [Detection.from_record(record) for record in records]


@strawberry.type(description="A short-lived link to one frame's image, for one caller.")
class ImageLink:
    url: str = strawberry.field(description="A path on this gateway (GET).")
    expires_at: datetime


async def _image_link(root: Any, info: Info) -> ImageLink:
    context = info.context
    record = await VisionReads(context.access).image(root.record.sha256)
    resources = context.resources
    link = issue_image_link(resources.keys, resources.settings, context.principal, record.key)
    return ImageLink(url=link.url, expires_at=datetime.fromtimestamp(link.expires_at, UTC))


@strawberry.federation.type(
    keys=["id"],
    authenticated=True,
    description="An image from a city camera, stored once by its SHA-256, and its analysis.",
)
class Frame(relay.Node):
    id: relay.NodeID[str]
    sha256: str = strawberry.field(description="The SHA-256 of the stored image, in hex.")
    media_type: str
    size_bytes: int
    width: int
    height: int
    captured_at: datetime
    received_at: datetime
    status: FrameStatus
    analysed_at: datetime | None
    image_url: str = strawberry.field(
        description="Where the image is (GET, with a token that lets you see personal data)."
    )
    record: strawberry.Private[FrameRecord]

    @classmethod
    def from_record(cls, record: FrameRecord) -> Frame:
        return cls(
            id=record.key,
            sha256=record.key,
            media_type=record.media_type,
            size_bytes=record.size_bytes,
            width=record.width,
            height=record.height,
            captured_at=record.captured_at,
            received_at=record.received_at,
            status=FrameStatus(record.status),
            analysed_at=record.analysed_at,
            image_url=f"/frames/{record.key}",
            record=record,
        )

    camera: Asset | None = related(
        AssetById,
        "camera_id",
        Asset.from_record,
        field=strawberry.federation.field,
        requires_scopes=[["assets:read"]],
    )
    bureau: Bureau | None = related(
        BureauById, "bureau_id", Bureau.from_record, description="The camera's bureau."
    )
    analyses: list[FrameAnalysis] = strawberry.field(
        resolver=_analyses, description="Its analyses, oldest first."
    )
    detections: list[Detection] = strawberry.field(
        resolver=_frame_detections, description="What was found in it."
    )
    image_link: ImageLink | None = strawberry.field(
        resolver=_image_link,
        description="A link to the image for a browser's <img>, which cannot send a token: "
        "for this frame only, for a few minutes, to you only (authorized and audited again "
        "when used). Null, with a PERSONAL_DATA_MASKED error, where you may not see the image.",
    )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Frame | None]:
        digests = [parse_digest(node_id) for node_id in node_ids]
        records = await FrameBySha.of(info).load_many([d for d in digests if d is not None])
        found = {record.sha256: record for record in records if record is not None}
        return [
            cls.from_record(found[d]) if d is not None and d in found else None for d in digests
        ]

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> Frame | None:
        # A router sends the ID as this subgraph served it: the global ID, not the bare key.
        key = decode_key(str(representation["id"]), "Frame", "id")
        return (await cls.resolve_nodes(info=info, node_ids=[key]))[0]


async def _detection_frame(root: Any, info: Info) -> Frame | None:
    record = await FrameBySha.of(info).load(root.record.frame_sha256)
    return Frame.from_record(record) if record else None


async def _detection_analysis(root: Any, info: Info) -> FrameAnalysis | None:
    records = await AnalysesOf.of(info).load(root.record.frame_sha256)
    found = next((r for r in records if r.id == root.record.analysis_id), None)
    return FrameAnalysis.from_record(found) if found else None


@strawberry.federation.type(
    keys=["id"],
    authenticated=True,
    description="A finding of the vision model in a frame: above its category's threshold it "
    "opened an incident, or joined an open one of the same category nearby as evidence.",
)
class Detection(relay.Node):
    id: relay.NodeID[int]
    confidence: float = strawberry.field(
        description="The probability the model gave the category (from its token "
        "log-probabilities), 0 to 1."
    )
    note: str = strawberry.field(description="The model's short note.")
    location: Location = strawberry.field(description="Where the camera is.")
    outcome: DetectionOutcome
    detected_at: datetime
    frame_sha256: str
    record: strawberry.Private[DetectionRecord]

    @classmethod
    def from_record(cls, record: DetectionRecord) -> Detection:
        return cls(
            id=record.id,
            confidence=record.confidence,
            note=record.note,
            location=Location(latitude=record.latitude, longitude=record.longitude),
            outcome=DetectionOutcome(record.outcome),
            detected_at=record.detected_at,
            frame_sha256=record.frame_sha256.hex(),
            record=record,
        )

    category: IncidentCategory | None = related(
        CategoryByCode, "category", IncidentCategory.from_record
    )
    bureau: Bureau | None = related(
        BureauById, "bureau_id", Bureau.from_record, description="The camera's bureau."
    )
    camera: Asset | None = related(
        AssetById,
        "camera_id",
        Asset.from_record,
        field=strawberry.federation.field,
        requires_scopes=[["assets:read"]],
    )
    incident: Incident | None = related(
        IncidentById,
        "incident_id",
        lambda record: Incident.from_record(record),
        description="The incident it opened or joined (null below the threshold, or when you "
        "may not see it).",
    )
    frame: Frame | None = strawberry.field(resolver=_detection_frame)
    analysis: FrameAnalysis | None = strawberry.field(
        resolver=_detection_analysis,
        description="The analysis it came from: model and prompt versions, raw answer, latency.",
    )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Detection | None]:
        records = await DetectionById.of(info).load_many([int(i) for i in node_ids])
        return [cls.from_record(r) if r else None for r in records]

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> Detection | None:
        node_id = decode_id(str(representation["id"]), "Detection", "id")
        return (await cls.resolve_nodes(info=info, node_ids=[str(node_id)]))[0]


@strawberry.type
class FrameConnection(relay.Connection[Frame]):
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many frames match (one extra query).")
    async def total_count(self) -> int:
        return await self.count()


@strawberry.type
class DetectionConnection(relay.Connection[Detection]):
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many detections match the filter (one extra query).")
    async def total_count(self) -> int:
        return await self.count()
