"""Model quality in the graph: how each model version did, per prompt version and category,
judged by what people did with its detections (``api.domain.quality`` says how it is counted)."""

from __future__ import annotations

import strawberry

from api.domain.quality import Interval, OutcomeCounts
from api.graph.core.context import Info
from api.graph.core.ids import decode_ids
from api.graph.core.prefetch import node_selections
from api.repositories.quality import QualityFilter
from api.services.vision.quality import CalibrationBin, QualityReads, VersionQuality


@strawberry.type(description="A share's 95% Wilson score interval.")
class ShareInterval:
    low: float
    high: float
    confidence: float

    @classmethod
    def of(cls, interval: Interval | None) -> ShareInterval | None:
        if interval is None:
            return None
        return cls(low=interval.low, high=interval.high, confidence=interval.confidence)


@strawberry.interface(description="Detections counted by what people did with them.")
class ReviewCounts:
    counts: strawberry.Private[OutcomeCounts]

    @strawberry.field(description="Every detection, reviewed or not, below threshold included.")
    def detections(self) -> int:
        return self.counts.detections

    @strawberry.field(description="Detections people judged, whatever they said.")
    def reviewed(self) -> int:
        return self.counts.reviewed

    @strawberry.field(description="Their incident was verified, dispatched, worked on or fixed.")
    def confirmed(self) -> int:
        return self.counts.confirmed

    @strawberry.field(description="Their incident was closed as a false positive.")
    def rejected(self) -> int:
        return self.counts.rejected

    @strawberry.field(description="Their incident was closed as a duplicate of another.")
    def duplicates(self) -> int:
        return self.counts.duplicates

    @strawberry.field(
        description="Their incident was closed as another body's business: a right finding, "
        "wrongly routed."
    )
    def transferred(self) -> int:
        return self.counts.transferred

    @strawberry.field(description="Their incident is still waiting for someone to look.")
    def pending(self) -> int:
        return self.counts.pending

    @strawberry.field(description="Under their category's threshold: they opened nothing.")
    def below_threshold(self) -> int:
        return self.counts.below_threshold

    @strawberry.field(
        description="Right findings (confirmed and transferred) among those judged right or "
        "rejected; null until one is."
    )
    def precision(self) -> float | None:
        return self.counts.precision

    @strawberry.field(description="Precision's 95% Wilson score interval.")
    def precision_interval(self) -> ShareInterval | None:
        return ShareInterval.of(self.counts.precision_interval)


@strawberry.type(description="The detections whose confidence fell in [low, high).")
class ConfidenceBin(ReviewCounts):
    low: float
    high: float


@strawberry.type(
    description="How a model version did on one category with one prompt version, over the "
    "detections you may see."
)
class ModelQuality(ReviewCounts):
    model: str
    version: str
    prompt_version: str
    category: str
    calibration: list[ConfidenceBin] = strawberry.field(
        description="Per confidence tenth holding detections: how many, and what people said."
    )
    threshold_misses: int = strawberry.field(
        description="Detections under the threshold whose place got a confirmed incident of "
        "the category afterwards (within the deduplication distance and time the detection was "
        "recorded under)."
    )
    model_misses: int = strawberry.field(
        description="Confirmed incidents people reported within a camera's coverage while this "
        "version analysed the camera's frames (within the deduplication time before the "
        "report), none of its answers naming the category."
    )


def _bin(value: CalibrationBin) -> ConfidenceBin:
    return ConfidenceBin(counts=value.counts, low=value.low, high=value.high)


def _quality(value: VersionQuality) -> ModelQuality:
    return ModelQuality(
        counts=value.counts,
        model=value.model,
        version=value.version,
        prompt_version=value.prompt_version,
        category=value.category,
        calibration=[_bin(item) for item in value.calibration],
        threshold_misses=value.threshold_misses,
        model_misses=value.model_misses,
    )


@strawberry.input(description="Which versions, prompts, categories, bureaus or cameras to count.")
class ModelQualityFilterInput:
    model: list[str] | None = None
    version: list[str] | None = None
    prompt_version: list[str] | None = None
    category: list[str] | None = None
    bureau: list[strawberry.ID] | None = strawberry.field(
        default=None, description="The cameras' bureaus, by ID."
    )
    camera: list[strawberry.ID] | None = None


def quality_filter(value: ModelQualityFilterInput | None) -> QualityFilter:
    if value is None:
        return QualityFilter()
    return QualityFilter(
        models=value.model,
        versions=value.version,
        prompt_versions=value.prompt_version,
        categories=value.category,
        bureau_ids=decode_ids(value.bureau, "Bureau", "filter.bureau"),
        camera_ids=decode_ids(value.camera, "Asset", "filter.camera"),
    )


@strawberry.type
class QualityQueries:
    @strawberry.federation.field(
        description="How each model version did, per prompt version and category: what people "
        "did with its detections (those you may see), precision with its interval, and "
        "calibration. Ordered by model, version, prompt version and category.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def model_quality(
        self, info: Info, filter: ModelQualityFilterInput | None = None
    ) -> list[ModelQuality]:
        vision = info.context.resources.settings.vision
        # Misses of the model are counted only for a document that asks for them.
        asked = {field.name for field in node_selections(info)}
        seconds = vision.dedup_hours * 3600 if "modelMisses" in asked else None
        found = await QualityReads(info.context.access).by_version(quality_filter(filter), seconds)
        return [_quality(value) for value in found]
