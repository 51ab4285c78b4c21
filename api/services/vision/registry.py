"""The city's decisions on model versions: a model officer puts a version in production (the
vision workers take it up without a restart), saying why; every decision is kept, audited and
readable by whoever reads the registry. Rolling back is deciding again, for the version before.
"""

from __future__ import annotations

from collections.abc import Collection

import asyncpg

from api.access.scope import AccessScope
from api.db.errors import translate
from api.domain.errors import InvalidInput, ServiceUnavailable
from api.policy import resources
from api.repositories.registry import DecisionRecord, ModelDecisions

PRODUCTION = "PRODUCTION"
MAX_DECISIONS = 100


class ModelRegistry:
    def __init__(self, access: AccessScope) -> None:
        self._access = access
        self._decisions = ModelDecisions(access.uow)

    async def promote(
        self, model: str, version: str, reason: str, served: Collection[str] | None
    ) -> DecisionRecord:
        """Put ``model`` (as the serving tier serves it) in production as ``version``.
        ``served`` is what the serving tier serves now (None: it could not be asked): a version
        it does not serve would leave every frame failing, so it is refused."""
        self._access.authorize("DecideModelVersion", resources.MODELS)
        model, version, reason = model.strip(), version.strip(), reason.strip()
        if not 1 <= len(model) <= 200:
            raise InvalidInput("model", "must be 1 to 200 characters")
        if not 1 <= len(version) <= 64:
            raise InvalidInput("version", "must be 1 to 64 characters")
        if not 1 <= len(reason) <= 2000:
            raise InvalidInput("reason", "say why, in 1 to 2,000 characters")
        if served is None:
            raise ServiceUnavailable(
                f"the serving tier cannot be asked whether it serves {model}; nothing was "
                "decided: try again when it answers"
            )
        if model not in served:
            known = ", ".join(sorted(served)) or "nothing"
            raise InvalidInput(
                "model", f"the serving tier does not serve {model!r} (it serves: {known})"
            )
        try:
            decision = await self._decisions.decide(
                model, version, PRODUCTION, reason, self._access.principal.subject
            )
        except asyncpg.PostgresError as error:
            raise translate(error) or error from None
        self._access.audit.saw("ModelDecision", decision.id)
        self._access.audit.outcome = "PROMOTED"
        return decision

    async def decisions(self, limit: int = MAX_DECISIONS) -> list[DecisionRecord]:
        """The newest decisions first (at most ``MAX_DECISIONS``)."""
        self._access.authorize("ViewModelRegistry", resources.MODELS)
        if not 1 <= limit <= MAX_DECISIONS:
            raise InvalidInput("last", f"must be 1 to {MAX_DECISIONS}")
        found = await self._decisions.newest(limit)
        self._access.audit.saw("ModelDecision", [decision.id for decision in found])
        return found

    async def in_force(self) -> DecisionRecord | None:
        self._access.authorize("ViewModelRegistry", resources.MODELS)
        return await self._decisions.in_force(PRODUCTION)
