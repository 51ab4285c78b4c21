"""Thresholds from evidence in the graph: the decisions in force, proposals computed from what
people judged, and ``setCategoryThreshold`` for the city's model officers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from api.domain.errors import DomainError
from api.domain.thresholds import AtThreshold, Proposal
from api.graph.core import errors
from api.graph.core.context import Info
from api.graph.models.quality import ShareInterval
from api.repositories.thresholds import ThresholdRecord
from api.services.vision.thresholds import ThresholdDecisions


def _decisions(info: Info) -> ThresholdDecisions:
    settings = info.context.resources.settings
    configured = (settings.serving.model, settings.serving.model_version)
    return ThresholdDecisions(info.context.access, settings.vision, configured)


@strawberry.type(description="A category's threshold, as a model officer decided it.")
class CategoryThreshold:
    id: strawberry.ID
    category: str
    threshold: float
    target_precision: float | None = strawberry.field(description="The precision asked for.")
    expected_precision: float | None = strawberry.field(
        description="What the reviews gave at this threshold when it was decided."
    )
    expected_recall: float | None
    judged: int | None = strawberry.field(description="Judged detections it rested on.")
    reason: str
    decided_by: str
    decided_at: datetime

    @classmethod
    def of(cls, record: ThresholdRecord) -> CategoryThreshold:
        return cls(
            id=strawberry.ID(str(record.id)),
            category=record.category,
            threshold=record.threshold,
            target_precision=record.target_precision,
            expected_precision=record.expected_precision,
            expected_recall=record.expected_recall,
            judged=record.judged,
            reason=record.reason,
            decided_by=record.decided_by,
            decided_at=record.decided_at,
        )


@strawberry.type(description="The judged findings' figures at one threshold.")
class ThresholdEvidence:
    threshold: float
    judged: int
    precision: float | None
    precision_interval: ShareInterval | None
    recall: float | None = strawberry.field(
        description="Of the right findings people judged (relative: nothing under the "
        "threshold in force was put before them)."
    )

    @classmethod
    def of(cls, point: AtThreshold | None) -> ThresholdEvidence | None:
        if point is None:
            return None
        return cls(
            threshold=point.threshold,
            judged=point.judged,
            precision=point.precision,
            precision_interval=ShareInterval.of(point.precision_interval),
            recall=point.recall,
        )


@strawberry.type(description="The threshold proposed for a category, from the reviews.")
class ThresholdProposal:
    category: str
    target_precision: float
    current: float = strawberry.field(description="The threshold in force.")
    judged: int
    proposed: ThresholdEvidence | None = strawberry.field(
        description="The lowest threshold reaching the precision (null: none does)."
    )
    best: ThresholdEvidence | None = strawberry.field(
        description="The highest precision any threshold reaches."
    )

    @classmethod
    def of(cls, proposal: Proposal) -> ThresholdProposal:
        return cls(
            category=proposal.category,
            target_precision=proposal.target_precision,
            current=proposal.current,
            judged=proposal.judged,
            proposed=ThresholdEvidence.of(proposal.proposed),
            best=ThresholdEvidence.of(proposal.best),
        )


@strawberry.input
class SetCategoryThresholdInput:
    category: str
    threshold: float
    reason: str = strawberry.field(description="Why: kept for good.")
    target_precision: float | None = strawberry.field(
        default=None, description="The precision the bureau asked for, if it did."
    )


@strawberry.type
class CategoryThresholdSet:
    decision: CategoryThreshold


SetCategoryThresholdResult = Annotated[
    CategoryThresholdSet | errors.InvalidInput | errors.Forbidden,
    strawberry.union("SetCategoryThresholdResult"),
]


@strawberry.type
class ThresholdQueries:
    @strawberry.federation.field(
        description="The threshold decisions, newest first.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def category_thresholds(self, info: Info, last: int = 20) -> list[CategoryThreshold]:
        return [CategoryThreshold.of(r) for r in await _decisions(info).history(last)]

    @strawberry.federation.field(
        description="Per category, the lowest threshold at which the production version's "
        "judged findings (in every bureau) reach `precision`.",
        authenticated=True,
        requires_scopes=[["models:admin"]],
    )
    async def threshold_proposals(
        self,
        info: Info,
        precision: float,
        categories: list[str] | None = None,
        min_judged: int = 20,
    ) -> list[ThresholdProposal]:
        found = await _decisions(info).propose(precision, categories, min_judged)
        return [ThresholdProposal.of(proposal) for proposal in found]


@strawberry.type
class ThresholdMutations:
    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["models:admin"]],
        description="Decide a category's threshold, recorded with what the reviews give at it; "
        "the vision workers follow it from their next batch.",
    )
    async def set_category_threshold(
        self, info: Info, input: SetCategoryThresholdInput
    ) -> SetCategoryThresholdResult:
        try:
            record = await _decisions(info).apply(
                input.category, input.threshold, input.reason, input.target_precision
            )
        except DomainError as error:
            info.context.audit.outcome = error.code
            return errors.to_graphql(error)  # type: ignore[return-value]
        return CategoryThresholdSet(decision=CategoryThreshold.of(record))
