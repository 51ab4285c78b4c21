"""``analyzeImage``: what the vision model finds in an image, on the spot."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.file_uploads import Upload

from api.domain.errors import DomainError
from api.graph.core import errors
from api.graph.core.context import Info
from api.graph.core.uploads import read_upload
from api.graph.models.detections import AnalysisOutcome
from api.services.vision.adhoc import ImageAnalyses


@strawberry.type(description="One finding in an analysed image.")
class ImageFinding:
    category: str
    note: str
    confidence: float
    above_threshold: bool = strawberry.field(
        description="Whether, in a camera frame, it would open or join an incident."
    )


@strawberry.type(description="What the vision model found in an image (nothing was stored).")
class ImageAnalysis:
    model: str
    model_version: str
    prompt_version: str
    outcome: AnalysisOutcome
    findings: list[ImageFinding]
    failure: str | None
    raw_answer: str
    latency_ms: int


AnalyzeImageResult = Annotated[
    ImageAnalysis
    | errors.FrameRejected
    | errors.Forbidden
    | errors.ServiceUnavailable
    | errors.TooBusy
    | errors.InvalidInput,
    strawberry.union("AnalyzeImageResult"),
]


@strawberry.type
class AnalysisMutations:
    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Have the vision model look at an image now (GraphQL multipart request, "
        "with the header `GraphQL-Require-Preflight: 1`): the same checks, model and prompt "
        "as camera frames; nothing is stored or queued.",
    )
    async def analyze_image(self, info: Info, file: Upload) -> AnalyzeImageResult:
        context = info.context
        settings = context.resources.settings.vision
        vision = context.resources.vision
        try:
            data = await read_upload(file, settings.max_frame_bytes)
            analyses = ImageAnalyses(
                context, vision.model, settings, vision.decoding, vision.analyses
            )
            answer = await analyses.analyse(data)
        except DomainError as error:
            context.audit.outcome = error.code
            return errors.to_graphql(error)  # type: ignore[return-value]
        analysis = answer.analysis
        return ImageAnalysis(
            model=answer.model.name,
            model_version=answer.model.version,
            prompt_version=answer.prompt.version,
            outcome=AnalysisOutcome(analysis.outcome.value),
            findings=[
                ImageFinding(
                    category=f.category,
                    note=f.note,
                    confidence=f.confidence,
                    above_threshold=f.confidence
                    >= answer.thresholds.get(f.category, settings.threshold),
                )
                for f in analysis.findings
            ],
            failure=analysis.failure,
            raw_answer=analysis.raw_answer,
            latency_ms=analysis.latency_ms,
        )
