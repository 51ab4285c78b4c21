"""Thresholds from evidence: for each category, the threshold that reaches the precision a bureau
asks for, computed from what people judged of the production version's findings, proposed with
the precision and recall it promises, and applied by a model officer (audited; the vision
workers follow it from their next batch). Nothing changes a threshold silently."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from api.access.scope import AccessScope
from api.db.errors import translate
from api.domain.errors import InvalidInput
from api.domain.thresholds import Proposal, at, propose
from api.policy import resources
from api.repositories.bureaus import BureauRepository
from api.repositories.registry import ModelDecisions
from api.repositories.thresholds import CategoryThresholds, ThresholdRecord
from api.settings import VisionSettings

MAX_HISTORY = 200


async def thresholds_in_force(access: AccessScope, vision: VisionSettings) -> dict[str, float]:
    """Per category, the threshold in force: the newest decision's, or the settings'."""
    decided = await CategoryThresholds(access.uow).in_force()
    return {**vision.thresholds, **decided}


class ThresholdDecisions:
    def __init__(
        self, access: AccessScope, vision: VisionSettings, configured: tuple[str, str]
    ) -> None:
        self._access = access
        self._vision = vision
        self._configured = configured  # production's version until a decision names one
        self._repository = CategoryThresholds(access.uow)

    async def propose(
        self,
        target_precision: float,
        categories: Sequence[str] | None = None,
        min_judged: int = 20,
    ) -> list[Proposal]:
        """Per category (those named, or every category people judged), the proposal. For
        those who decide thresholds: the evidence is every bureau's."""
        self._access.authorize("DecideModelVersion", resources.MODELS)
        if not 0 < target_precision <= 1:
            raise InvalidInput("precision", "must be above 0 and at most 1")
        if not 1 <= min_judged <= 100_000:
            raise InvalidInput("minJudged", "must be 1 to 100,000")
        model, version = await self._production()
        judged = await self._repository.judged(
            model, version, list(categories) if categories else None
        )
        in_force = await thresholds_in_force(self._access, self._vision)
        named = list(categories) if categories else sorted(judged)
        self._access.audit.outcome = "PROPOSED"
        return [
            propose(
                category, judged.get(category, []), target_precision,
                in_force.get(category, self._vision.threshold), min_judged,
            )
            for category in named
        ]  # fmt: skip

    async def apply(
        self,
        category: str,
        threshold: float,
        reason: str,
        target_precision: float | None = None,
    ) -> ThresholdRecord:
        """Decide ``category``'s threshold, recorded with what the reviews give at it."""
        self._access.authorize("DecideModelVersion", resources.MODELS)
        reason = reason.strip()
        if not 0 < threshold <= 1:
            raise InvalidInput("threshold", "must be above 0 and at most 1")
        if target_precision is not None and not 0 < target_precision <= 1:
            raise InvalidInput("precision", "must be above 0 and at most 1")
        if not 1 <= len(reason) <= 2000:
            raise InvalidInput("reason", "say why, in 1 to 2,000 characters")
        known = {c.code for c in await BureauRepository(self._access.uow).categories()}
        if category not in known:
            raise InvalidInput("category", f"no category {category!r}")
        model, version = await self._production()
        judged = (await self._repository.judged(model, version, [category])).get(category, [])
        evidence = at(judged, threshold)
        try:
            record = await self._repository.decide(
                category, threshold, target_precision, evidence.precision, evidence.recall,
                evidence.judged, reason, self._access.principal.subject,
            )  # fmt: skip
        except asyncpg.PostgresError as error:
            raise translate(error) or error from None
        self._access.audit.saw("CategoryThreshold", record.id)
        self._access.audit.outcome = "THRESHOLD_SET"
        return record

    async def history(self, limit: int = MAX_HISTORY) -> list[ThresholdRecord]:
        self._access.authorize("ViewModelRegistry", resources.MODELS)
        if not 1 <= limit <= MAX_HISTORY:
            raise InvalidInput("last", f"must be 1 to {MAX_HISTORY}")
        found = await self._repository.history(limit)
        self._access.audit.saw("CategoryThreshold", [r.id for r in found])
        return found

    async def _production(self) -> tuple[str, str]:
        decision = await ModelDecisions(self._access.uow).production()
        return (decision.model, decision.version) if decision is not None else self._configured
