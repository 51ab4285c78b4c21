"""The city's decisions on model versions: a model officer puts a version in production (the
vision workers take it up without a restart), or tries a candidate beside it first, in shadow
(it analyses a share of the frames as well, acting on nothing) or as a canary (it analyses a
share instead, for real, and is ended by the workers when people reject too much of what it
finds), saying why; every decision is kept, audited and readable by whoever reads the registry.
Rolling back is deciding again, for the version before.
"""

from __future__ import annotations

from collections.abc import Collection

import asyncpg

from api.access.scope import AccessScope
from api.db.errors import translate
from api.domain.errors import InvalidInput, NotFound, ServiceUnavailable
from api.policy import resources
from api.repositories.registry import (
    CANARY,
    PRODUCTION,
    SHADOW,
    CanaryHealth,
    DecisionRecord,
    InForce,
    ModelDecisions,
)

MAX_DECISIONS = 100


class ModelRegistry:
    def __init__(self, access: AccessScope) -> None:
        self._access = access
        self._decisions = ModelDecisions(access.uow)

    async def promote(
        self, model: str, version: str, reason: str, served: Collection[str] | None
    ) -> DecisionRecord:
        """Put ``model`` (as the serving tier serves it) in production as ``version`` (which
        ends a trial under way). ``served`` is what the serving tier serves now (None: it could
        not be asked): a version it does not serve would leave every frame failing, so it is
        refused."""
        self._access.authorize("DecideModelVersion", resources.MODELS)
        model, version, reason = _checked(model, version, reason, served)
        decision = await self._decide(model, version, PRODUCTION, reason)
        self._access.audit.outcome = "PROMOTED"
        return decision

    async def try_out(
        self,
        model: str,
        version: str,
        role: str,
        share: float,
        reason: str,
        served: Collection[str] | None,
        *,
        rejected_bound: float | None = None,
        min_reviewed: int | None = None,
    ) -> DecisionRecord:
        """Try ``model`` as ``version`` beside production: in SHADOW or as a CANARY (with
        ``rejected_bound`` and ``min_reviewed``) on ``share`` of the frames. It replaces a
        trial under way."""
        self._access.authorize("DecideModelVersion", resources.MODELS)
        model, version, reason = _checked(model, version, reason, served)
        if role not in (SHADOW, CANARY):
            raise InvalidInput("role", "must be SHADOW or CANARY")
        if not 0 < share <= (1 if role == SHADOW else 0.5):
            most = "1" if role == SHADOW else "0.5 (more is a promotion)"
            raise InvalidInput("share", f"must be above 0 and at most {most}")
        if role == CANARY:
            if rejected_bound is None or not 0 < rejected_bound < 1:
                raise InvalidInput("rejectedBound", "must be above 0 and below 1")
            if min_reviewed is None or not 1 <= min_reviewed <= 1_000_000:
                raise InvalidInput("minReviewed", "must be 1 to 1,000,000")
        else:
            rejected_bound = min_reviewed = None
        production = await self._decisions.production()
        if production is not None and (production.model, production.version) == (model, version):
            raise InvalidInput("version", f"{model} {version} is already in production")
        decision = await self._decide(
            model,
            version,
            role,
            reason,
            share=share,
            rejected_bound=rejected_bound,
            min_reviewed=min_reviewed,
        )
        self._access.audit.outcome = role
        return decision

    async def end_trial(self, reason: str) -> DecisionRecord:
        """End the trial under way (production alone analyses the frames again)."""
        self._access.authorize("DecideModelVersion", resources.MODELS)
        reason = reason.strip()
        if not 1 <= len(reason) <= 2000:
            raise InvalidInput("reason", "say why, in 1 to 2,000 characters")
        trial = (await self._decisions.in_force()).trial
        if trial is None:
            raise NotFound("ModelTrial", "under way")
        try:
            decision = await self._decisions.end_trial(
                trial, reason, self._access.principal.subject
            )
        except asyncpg.PostgresError as error:
            raise translate(error) or error from None
        self._access.audit.saw("ModelDecision", [trial.id, decision.id])
        self._access.audit.outcome = "TRIAL_ENDED"
        return decision

    async def decisions(self, limit: int = MAX_DECISIONS) -> list[DecisionRecord]:
        """The newest decisions first (at most ``MAX_DECISIONS``)."""
        self._access.authorize("ViewModelRegistry", resources.MODELS)
        if not 1 <= limit <= MAX_DECISIONS:
            raise InvalidInput("last", f"must be 1 to {MAX_DECISIONS}")
        found = await self._decisions.newest(limit)
        self._access.audit.saw("ModelDecision", [decision.id for decision in found])
        return found

    async def in_force(self) -> InForce:
        self._access.authorize("ViewModelRegistry", resources.MODELS)
        return await self._decisions.in_force()

    async def _decide(
        self,
        model: str,
        version: str,
        role: str,
        reason: str,
        *,
        share: float | None = None,
        rejected_bound: float | None = None,
        min_reviewed: int | None = None,
    ) -> DecisionRecord:
        try:
            decision = await self._decisions.decide(
                model,
                version,
                role,
                reason,
                self._access.principal.subject,
                share=share,
                rejected_bound=rejected_bound,
                min_reviewed=min_reviewed,
            )
        except asyncpg.PostgresError as error:
            raise translate(error) or error from None
        self._access.audit.saw("ModelDecision", decision.id)
        return decision


async def watch_canary(decisions: ModelDecisions, actor: str) -> DecisionRecord | None:
    """End the canary under way if people rejected more of its reviewed detections than its
    bound allows (once enough were reviewed): the decision that ended it, or None."""
    trial = (await decisions.in_force()).trial
    if trial is None or trial.role != CANARY:
        return None
    assert trial.rejected_bound is not None and trial.min_reviewed is not None
    health: CanaryHealth = await decisions.canary_health(trial.id)
    if health.reviewed < trial.min_reviewed or health.rejected_share <= trial.rejected_bound:
        return None
    reason = (
        f"rolled back automatically: people rejected {health.rejected} of the "
        f"{health.reviewed} detections of {trial.model} {trial.version} they reviewed "
        f"({health.rejected_share:.1%}), past the bound of {trial.rejected_bound:.1%}"
    )
    return await decisions.end_trial(trial, reason, actor)


def _checked(
    model: str, version: str, reason: str, served: Collection[str] | None
) -> tuple[str, str, str]:
    reason = reason.strip()
    if not 1 <= len(reason) <= 2000:
        raise InvalidInput("reason", "say why, in 1 to 2,000 characters")
    return (*checked_model(model, version, served), reason)


def checked_model(model: str, version: str, served: Collection[str] | None) -> tuple[str, str]:
    """``model`` and ``version``, trimmed, if the serving tier serves the model (``served``:
    what it serves now; None if it could not be asked, which refuses too)."""
    model, version = model.strip(), version.strip()
    if not 1 <= len(model) <= 200:
        raise InvalidInput("model", "must be 1 to 200 characters")
    if not 1 <= len(version) <= 64:
        raise InvalidInput("version", "must be 1 to 64 characters")
    if served is None:
        raise ServiceUnavailable(
            f"the serving tier cannot be asked whether it serves {model}; nothing was "
            "done: try again when it answers"
        )
    if model not in served:
        known = ", ".join(sorted(served)) or "nothing"
        raise InvalidInput(
            "model", f"the serving tier does not serve {model!r} (it serves: {known})"
        )
    return model, version
