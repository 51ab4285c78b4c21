"""The registry's decisions in the graph: which model version is in production, the trial beside
it and how the two compare, every decision with who made it and why; ``promoteModelVersion``,
``tryModelVersion`` and ``endModelTrial`` for the city's model officers."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from graphql import GraphQLError

from api.domain.errors import DomainError, NotFound
from api.graph.core import errors
from api.graph.core.context import Info
from api.graph.models.quality import ReviewCounts
from api.inference.client import ServingRefused, ServingUnavailable
from api.repositories.registry import DecisionRecord
from api.services.vision.registry import ModelRegistry
from api.services.vision.trials import Trial, TrialReads


@strawberry.enum(description="What a trial's candidate does beside production.")
class TrialRole(Enum):
    SHADOW = strawberry.enum_value(
        "SHADOW", description="Analyses a share of the frames as well, acting on nothing."
    )
    CANARY = strawberry.enum_value(
        "CANARY",
        description="Analyses a share of the frames instead, for real; ended by the workers "
        "when people reject more of its findings than the bound.",
    )


@strawberry.type(description="A decision on which model version the vision workers use.")
class ModelDecision:
    id: strawberry.ID
    model: str = strawberry.field(description="The model, as the serving tier serves it.")
    version: str
    role: str = strawberry.field(
        description="PRODUCTION: every frame is analysed by it; SHADOW or CANARY: tried beside "
        "production; TRIAL_ENDED: the trial `ends` names was ended."
    )
    reason: str
    decided_by: str
    decided_at: datetime
    share: float | None = strawberry.field(
        description="SHADOW, CANARY: the share of frames the candidate analyses."
    )
    rejected_bound: float | None = strawberry.field(
        description="CANARY: ended when the rejected share of its reviewed detections passes this."
    )
    min_reviewed: int | None = strawberry.field(
        description="CANARY: ...once at least this many were reviewed."
    )
    ends: strawberry.ID | None = strawberry.field(description="TRIAL_ENDED: the trial it ended.")

    @classmethod
    def of(cls, record: DecisionRecord) -> ModelDecision:
        return cls(
            id=strawberry.ID(str(record.id)),
            model=record.model,
            version=record.version,
            role=record.role,
            reason=record.reason,
            decided_by=record.decided_by,
            decided_at=record.decided_at,
            share=record.share,
            rejected_bound=record.rejected_bound,
            min_reviewed=record.min_reviewed,
            ends=strawberry.ID(str(record.ends)) if record.ends is not None else None,
        )


@strawberry.type(description="Detections of one version in a trial, by what people did.")
class TrialReview(ReviewCounts):
    pass


@strawberry.type(description="How the candidate and production did on one category.")
class TrialCategory:
    category: str
    production: TrialReview
    candidate: TrialReview = strawberry.field(
        description="SHADOW: the candidate's findings production made too, judged by what "
        "people did with production's; CANARY: its own detections."
    )
    both: int | None = strawberry.field(
        description="SHADOW: frames where both named the category (at or above its threshold)."
    )
    production_only: int | None
    candidate_only: int | None = strawberry.field(
        description="SHADOW: frames where only the candidate named it (never put before people)."
    )
    agreement: float | None = strawberry.field(
        description="SHADOW: `both` among the frames where either named it."
    )


@strawberry.type(description="A candidate version tried beside production, and how they compare.")
class ModelTrial:
    decision: ModelDecision
    production_model: str
    production_version: str
    ended_at: datetime | None = strawberry.field(description="Null while it is under way.")
    production_frames: int = strawberry.field(description="Frames production analysed.")
    candidate_frames: int = strawberry.field(description="Frames the candidate analysed.")
    categories: list[TrialCategory]

    @classmethod
    def of(cls, trial: Trial) -> ModelTrial:
        comparison = trial.comparison
        return cls(
            decision=ModelDecision.of(trial.decision),
            production_model=trial.production[0],
            production_version=trial.production[1],
            ended_at=trial.ended_at,
            production_frames=comparison.production_frames,
            candidate_frames=comparison.candidate_frames,
            categories=[
                TrialCategory(
                    category=item.category,
                    production=TrialReview(counts=item.production),
                    candidate=TrialReview(counts=item.candidate),
                    both=item.both,
                    production_only=item.production_only,
                    candidate_only=item.candidate_only,
                    agreement=item.agreement,
                )
                for item in comparison.categories
            ],
        )


@strawberry.input
class PromoteModelVersionInput:
    model: str = strawberry.field(description="The model, as the serving tier serves it.")
    version: str
    reason: str = strawberry.field(description="Why (the evaluation, the incident): kept for good.")


@strawberry.type
class ModelPromoted:
    decision: ModelDecision


PromoteModelVersionResult = Annotated[
    ModelPromoted | errors.InvalidInput | errors.Forbidden | errors.ServiceUnavailable,
    strawberry.union("PromoteModelVersionResult"),
]


@strawberry.input
class TryModelVersionInput:
    model: str = strawberry.field(description="The candidate, as the serving tier serves it.")
    version: str
    role: TrialRole
    share: float = strawberry.field(
        description="The share of frames it analyses (SHADOW: up to 1; CANARY: up to 0.5)."
    )
    rejected_bound: float | None = strawberry.field(
        default=None, description="CANARY: the rejected share past which it is ended."
    )
    min_reviewed: int | None = strawberry.field(
        default=None, description="CANARY: reviewed detections needed before the bound applies."
    )
    reason: str = strawberry.field(description="Why: kept for good.")


@strawberry.type
class ModelTrialStarted:
    decision: ModelDecision


TryModelVersionResult = Annotated[
    ModelTrialStarted | errors.InvalidInput | errors.Forbidden | errors.ServiceUnavailable,
    strawberry.union("TryModelVersionResult"),
]


@strawberry.input
class EndModelTrialInput:
    reason: str = strawberry.field(description="Why: kept for good.")


@strawberry.type
class ModelTrialEnded:
    decision: ModelDecision


EndModelTrialResult = Annotated[
    ModelTrialEnded | errors.InvalidInput | errors.NotFound | errors.Forbidden,
    strawberry.union("EndModelTrialResult"),
]


@strawberry.type
class DecisionQueries:
    @strawberry.federation.field(
        description="The registry's decisions on model versions, newest first.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def model_decisions(self, info: Info, last: int = 20) -> list[ModelDecision]:
        found = await ModelRegistry(info.context.access).decisions(last)
        return [ModelDecision.of(record) for record in found]

    @strawberry.federation.field(
        description="The decision in force: the version the vision workers use (null: the "
        "configured model, until a decision is made).",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def production_model(self, info: Info) -> ModelDecision | None:
        found = (await ModelRegistry(info.context.access).in_force()).production
        return ModelDecision.of(found) if found is not None else None

    @strawberry.federation.field(
        description="A trial (by its decision's id; without one, the trial under way, null if "
        "none) and how its candidate compares with production, over the detections you may see.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def model_trial(self, info: Info, id: strawberry.ID | None = None) -> ModelTrial | None:
        decision_id = None
        if id is not None:
            try:
                decision_id = int(id)
            except ValueError:
                raise GraphQLError(f"id: {id!r} is not a decision's id") from None
        settings = info.context.resources.settings
        reads = TrialReads(
            info.context.access,
            settings.vision,
            (settings.serving.model, settings.serving.model_version),
        )
        try:
            trial = await reads.trial(decision_id)
        except NotFound:
            return None
        return ModelTrial.of(trial) if trial is not None else None


@strawberry.type
class DecisionMutations:
    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["models:admin"]],
        description="Put a model version in production: the vision workers take it up for the "
        "next frames, without a restart. The serving tier must serve the model. Rolling back "
        "is promoting the version before again.",
    )
    async def promote_model_version(
        self, info: Info, input: PromoteModelVersionInput
    ) -> PromoteModelVersionResult:
        context = info.context
        served = await served_models(info)
        try:
            decision = await ModelRegistry(context.access).promote(
                input.model, input.version, input.reason, served
            )
        except DomainError as error:
            context.audit.outcome = error.code
            return errors.to_graphql(error)  # type: ignore[return-value]
        return ModelPromoted(decision=ModelDecision.of(decision))

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["models:admin"]],
        description="Try a candidate version beside production: in SHADOW (it analyses a share "
        "of the frames as well, acting on nothing) or as a CANARY (it analyses a share instead, "
        "for real, and the workers end it when people reject more of its reviewed findings than "
        "the bound). It replaces a trial under way; promoting the candidate ends it.",
    )
    async def try_model_version(
        self, info: Info, input: TryModelVersionInput
    ) -> TryModelVersionResult:
        context = info.context
        served = await served_models(info)
        try:
            decision = await ModelRegistry(context.access).try_out(
                input.model,
                input.version,
                input.role.name,
                input.share,
                input.reason,
                served,
                rejected_bound=input.rejected_bound,
                min_reviewed=input.min_reviewed,
            )
        except DomainError as error:
            context.audit.outcome = error.code
            return errors.to_graphql(error)  # type: ignore[return-value]
        return ModelTrialStarted(decision=ModelDecision.of(decision))

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["models:admin"]],
        description="End the trial under way: production alone analyses the frames again.",
    )
    async def end_model_trial(self, info: Info, input: EndModelTrialInput) -> EndModelTrialResult:
        context = info.context
        try:
            decision = await ModelRegistry(context.access).end_trial(input.reason)
        except DomainError as error:
            context.audit.outcome = error.code
            return errors.to_graphql(error)  # type: ignore[return-value]
        return ModelTrialEnded(decision=ModelDecision.of(decision))


async def served_models(info: Info) -> set[str] | None:
    """The models the serving tier serves now (None: it could not be asked)."""
    try:
        return {
            str(item.get("id")) for item in await info.context.resources.vision.serving.models()
        }
    except (ServingUnavailable, ServingRefused):
        return None
