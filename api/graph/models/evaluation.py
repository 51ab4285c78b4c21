"""Evaluation sets and runs in the graph: the sets of the bureaus whose frames you may see, each
run's figures per category (``api.domain.evaluation`` says how they are counted), and
``evaluateModelVersion``, which queues a run for the vision workers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from graphql import GraphQLError

from api.domain.errors import DomainError, NotFound
from api.domain.evaluation import CategoryFigures
from api.graph.core import errors
from api.graph.core.context import Info
from api.graph.models.decisions import served_models
from api.graph.models.quality import ShareInterval
from api.repositories.evaluation import RunRecord, SetRecord
from api.services.vision.evaluation import EvaluationReads, EvaluationSets, RunReport
from api.services.vision.evaluation_jobs import request_evaluation
from api.vision.store import FrameStore

# What one document can make the gateway compute: each run's figures are computed from its
# answers (up to 100,000 frames), so runs are few per set, and curves are thinned.
MAX_SETS = 100
MAX_RUNS = 20
MAX_CURVE_POINTS = 500


@strawberry.type(description="Precision and recall at one confidence threshold.")
class CurvePoint:
    threshold: float
    precision: float
    recall: float


@strawberry.type(description="How a run did on one category of its set.")
class EvaluationCategory:
    figures: strawberry.Private[CategoryFigures]

    @strawberry.field
    def category(self) -> str:
        return self.figures.category

    @strawberry.field(description="The category's threshold in force.")
    def threshold(self) -> float:
        return self.figures.threshold

    @strawberry.field(description="Frames whose label has the category.")
    def labelled(self) -> int:
        return self.figures.labelled

    @strawberry.field
    def true_positives(self) -> int:
        return self.figures.true_positives

    @strawberry.field
    def false_positives(self) -> int:
        return self.figures.false_positives

    @strawberry.field
    def false_negatives(self) -> int:
        return self.figures.false_negatives

    @strawberry.field
    def precision(self) -> float | None:
        return self.figures.precision

    @strawberry.field(description="Wilson's 95% interval.")
    def precision_interval(self) -> ShareInterval | None:
        return ShareInterval.of(self.figures.precision_interval)

    @strawberry.field
    def recall(self) -> float | None:
        return self.figures.recall

    @strawberry.field(description="Wilson's 95% interval.")
    def recall_interval(self) -> ShareInterval | None:
        return ShareInterval.of(self.figures.recall_interval)

    @strawberry.field
    def f1(self) -> float | None:
        return self.figures.f1

    @strawberry.field(description="The delta method's 95% interval.")
    def f1_interval(self) -> ShareInterval | None:
        return ShareInterval.of(self.figures.f1_interval)

    @strawberry.field(
        description="At each confidence the answers named it with, lowest first; at most "
        "`points` of them, evenly spaced, the lowest and highest kept (the CLI gives them all)."
    )
    def curve(self, points: int = 50) -> list[CurvePoint]:
        if not 2 <= points <= MAX_CURVE_POINTS:
            raise GraphQLError(f"points: must be 2 to {MAX_CURVE_POINTS}")
        curve = self.figures.curve
        if len(curve) > points:
            step = (len(curve) - 1) / (points - 1)
            curve = tuple(curve[round(i * step)] for i in range(points))
        return [CurvePoint(threshold=p.threshold, precision=p.precision, recall=p.recall)
                for p in curve]  # fmt: skip


@strawberry.type(description="A model version's answers over an evaluation set.")
class EvaluationRun:
    id: strawberry.ID
    model: str
    version: str
    prompt_version: str
    started_by: str
    started_at: datetime
    frames: int = strawberry.field(description="The set's frames.")
    answered: int = strawberry.field(description="Frames answered so far.")
    unusable: int = strawberry.field(description="Answers that could not be used.")
    categories: list[EvaluationCategory]

    @classmethod
    def of(cls, report: RunReport) -> EvaluationRun:
        run, figures = report.run, report.figures
        return cls(
            id=strawberry.ID(str(run.id)),
            model=run.model,
            version=run.model_version,
            prompt_version=run.prompt_version,
            started_by=run.started_by,
            started_at=run.started_at,
            frames=figures.frames,
            answered=figures.answered,
            unusable=figures.unusable,
            categories=[EvaluationCategory(figures=item) for item in figures.categories],
        )


@strawberry.type(description="A bureau's frames labelled by people, to measure versions on.")
class EvaluationSet:
    record: strawberry.Private[SetRecord]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.record.id))

    @strawberry.field
    def name(self) -> str:
        return self.record.name

    @strawberry.field
    def version(self) -> int:
        return self.record.version

    @strawberry.field(description="The bureau whose frames it holds (its code).")
    def bureau(self) -> str:
        return self.record.bureau_code

    @strawberry.field(description="MANIFEST or REVIEWS.")
    def source(self) -> str:
        return self.record.source

    @strawberry.field
    def description(self) -> str:
        return self.record.description

    @strawberry.field(description="The categories its labels speak of.")
    def categories(self) -> list[str]:
        return self.record.categories

    @strawberry.field
    def frames(self) -> int:
        return self.record.frames

    @strawberry.field
    def created_by(self) -> str:
        return self.record.created_by

    @strawberry.field
    def created_at(self) -> datetime:
        return self.record.created_at

    @strawberry.field(description="The newest runs over it (at most 20), with their figures.")
    async def runs(self, info: Info, last: int = 5) -> list[EvaluationRun]:
        if not 1 <= last <= MAX_RUNS:
            raise GraphQLError(f"last: must be 1 to {MAX_RUNS}")
        reads = EvaluationReads(info.context.access, info.context.resources.settings.vision)
        found: list[RunRecord] = await reads.runs(self.record.id, last)
        return [EvaluationRun.of(await reads.report(run.id)) for run in found]


@strawberry.type
class EvaluationQueries:
    @strawberry.federation.field(
        description="The evaluation sets of the bureaus whose frames you may see.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def evaluation_sets(
        self, info: Info, name: str | None = None, last: int = 20
    ) -> list[EvaluationSet]:
        if not 1 <= last <= MAX_SETS:
            raise GraphQLError(f"last: must be 1 to {MAX_SETS}")
        settings = info.context.resources.settings
        sets = EvaluationSets(
            info.context.access, FrameStore(settings.vision.frames_dir), settings.vision
        )
        return [EvaluationSet(record=record) for record in (await sets.sets(name))[:last]]

    @strawberry.federation.field(
        description="An evaluation run, with its figures (null: none you may see).",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def evaluation_run(self, info: Info, id: strawberry.ID) -> EvaluationRun | None:
        try:
            run_id = int(id)
        except ValueError:
            raise GraphQLError(f"id: {id!r} is not a run's id") from None
        reads = EvaluationReads(info.context.access, info.context.resources.settings.vision)
        try:
            return EvaluationRun.of(await reads.report(run_id))
        except NotFound:
            return None


@strawberry.input
class EvaluateModelVersionInput:
    model: str = strawberry.field(description="The model, as the serving tier serves it.")
    version: str = strawberry.field(description="The version that names it.")
    set: str = strawberry.field(description="The evaluation set's name (your bureau's).")
    set_version: int | None = strawberry.field(
        default=None, description="The set's version (default: the newest)."
    )


@strawberry.type(description="The run, opened and queued for the vision workers.")
class EvaluationQueued:
    run: EvaluationRun = strawberry.field(
        description="Its `answered` grows as the workers answer the frames."
    )
    queued: bool = strawberry.field(
        description="False when nothing more was queued: the run's job was already waiting or "
        "under way, or every frame is answered."
    )


EvaluateModelVersionResult = Annotated[
    EvaluationQueued
    | errors.InvalidInput
    | errors.NotFound
    | errors.Forbidden
    | errors.ServiceUnavailable,
    strawberry.union("EvaluateModelVersionResult"),
]


@strawberry.type
class EvaluationMutations:
    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["models:admin"]],
        description="Run a model version over one of your bureau's evaluation sets, with the "
        "workers' prompt and structured outputs: the vision workers answer its frames as you, "
        "recording each answer, and resume a run that stopped. Asked again for the same version "
        "and set, it is the same run.",
    )
    async def evaluate_model_version(
        self, info: Info, input: EvaluateModelVersionInput
    ) -> EvaluateModelVersionResult:
        context = info.context
        served = await served_models(info)
        try:
            requested = await request_evaluation(
                context.access, input.model, input.version, input.set, input.set_version, served
            )
            report = await EvaluationReads(
                context.access, context.resources.settings.vision
            ).report(requested.run.id)
        except DomainError as error:
            context.audit.outcome = error.code
            return errors.to_graphql(error)  # type: ignore[return-value]
        return EvaluationQueued(run=EvaluationRun.of(report), queued=requested.queued)
