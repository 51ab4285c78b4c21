"""The registry's decisions in the graph: which model version is in production, every decision
with who made it and why, and ``promoteModelVersion`` for the city's model officers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from api.domain.errors import DomainError
from api.graph.core import errors
from api.graph.core.context import Info
from api.inference.client import ServingRefused, ServingUnavailable
from api.repositories.registry import DecisionRecord
from api.services.vision.registry import ModelRegistry


@strawberry.type(description="A decision on which model version the vision workers use.")
class ModelDecision:
    id: strawberry.ID
    model: str = strawberry.field(description="The model, as the serving tier serves it.")
    version: str
    role: str = strawberry.field(description="PRODUCTION: every frame is analysed by it.")
    reason: str
    decided_by: str
    decided_at: datetime

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
        found = await ModelRegistry(info.context.access).in_force()
        return ModelDecision.of(found) if found is not None else None


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
        try:
            served: set[str] | None = {
                str(item.get("id")) for item in await context.resources.vision.serving.models()
            }
        except (ServingUnavailable, ServingRefused):
            served = None
        try:
            decision = await ModelRegistry(context.access).promote(
                input.model, input.version, input.reason, served
            )
        except DomainError as error:
            context.audit.outcome = error.code
            return errors.to_graphql(error)  # type: ignore[return-value]
        return ModelPromoted(decision=ModelDecision.of(decision))
