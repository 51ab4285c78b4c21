"""The models domain's part of the graph: the model registry, image analysis, and the discover
step (camera frames, their analyses and detections, and frame intake over REST)."""

from __future__ import annotations

import strawberry

from api.graph.core.bundle import DomainBundle
from api.graph.models.analysis import AnalysisMutations
from api.graph.models.cards import CardMutations, CardQueries, ModelCard
from api.graph.models.decisions import DecisionMutations, DecisionQueries
from api.graph.models.detections import Detection, Frame
from api.graph.models.evaluation import EvaluationMutations, EvaluationQueries
from api.graph.models.frames import DetectionSubscriptions, FrameMutations, FrameQueries
from api.graph.models.loaders import (
    AnalysesOf,
    CardById,
    DetectionById,
    DetectionsInFrame,
    FrameBySha,
    ModelVersionsByName,
)
from api.graph.models.quality import QualityQueries
from api.graph.models.registry import ModelQueries
from api.graph.models.thresholds import ThresholdMutations, ThresholdQueries
from api.graph.models.vision_model import VisionModel
from api.http.frames import frame_routes
from api.http.openapi.description import described


@strawberry.type
class Queries(
    ModelQueries,
    FrameQueries,
    QualityQueries,
    DecisionQueries,
    EvaluationQueries,
    ThresholdQueries,
    CardQueries,
):
    pass


@strawberry.type
class Mutations(
    AnalysisMutations,
    FrameMutations,
    DecisionMutations,
    EvaluationMutations,
    ThresholdMutations,
    CardMutations,
):
    pass


bundle = DomainBundle(
    name="models",
    query=Queries,
    mutation=Mutations,
    subscription=DetectionSubscriptions,
    types=(Frame, Detection, VisionModel, ModelCard),
    loaders=(
        FrameBySha,
        AnalysesOf,
        DetectionById,
        DetectionsInFrame,
        ModelVersionsByName,
        CardById,
    ),
    routes=tuple(frame_routes()),
    apis=(described("frames"),),
)
