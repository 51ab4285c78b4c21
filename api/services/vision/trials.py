"""A trial as the registry's readers see it: the candidate, the production version it was tried
against, whether it is still under way, and how the two compare
(``api.repositories.trials``), over the detections the reader may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from api.access.scope import AccessScope
from api.domain.errors import NotFound
from api.policy import resources
from api.repositories.registry import SHADOW, DecisionRecord, ModelDecisions
from api.repositories.trials import Comparison, TrialComparisons, Versions
from api.services.vision.thresholds import thresholds_in_force
from api.settings import VisionSettings


@dataclass(frozen=True, slots=True)
class Trial:
    decision: DecisionRecord
    production: tuple[str, str]  # the version in production while it ran
    ended_at: datetime | None
    comparison: Comparison


class TrialReads:
    def __init__(
        self, access: AccessScope, vision: VisionSettings, configured: tuple[str, str]
    ) -> None:
        self._access = access
        self._vision = vision
        self._configured = configured  # production's version until a decision names one
        self._decisions = ModelDecisions(access.uow)

    async def trial(self, decision_id: int | None = None) -> Trial | None:
        """The trial ``decision_id`` (a SHADOW or CANARY decision), or the one under way."""
        self._access.authorize("ViewModelRegistry", resources.MODELS)
        if decision_id is None:
            decision = (await self._decisions.in_force()).trial
            if decision is None:
                return None
        else:
            found = await self._decisions.by_id(decision_id)
            if found is None or found.role not in ("SHADOW", "CANARY"):
                raise NotFound("ModelTrial", decision_id)
            decision = found
        before = await self._decisions.production_before(decision.id)
        production = (before.model, before.version) if before is not None else self._configured
        ended_at = await self._decisions.ended_at(decision)
        versions = Versions(
            candidate=(decision.model, decision.version),
            production=production,
            since=decision.decided_at,
            until=ended_at,
        )
        comparisons = TrialComparisons(self._access.uow)
        if decision.role == SHADOW:
            thresholds = await thresholds_in_force(self._access, self._vision)
            comparison = await comparisons.shadow(versions, thresholds, self._vision.threshold)
        else:
            comparison = await comparisons.canary(versions)
        self._access.audit.saw("ModelDecision", decision.id)
        return Trial(decision, production, ended_at, comparison)
