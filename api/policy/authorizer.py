"""Per-request authorization: asks the policy engine and remembers what was decided for audit."""

from __future__ import annotations

from collections.abc import Sequence

from api.audit.collector import AuditCollector
from api.auth.principal import Principal
from api.domain.errors import Forbidden
from api.policy.engine import Decision, Entity, PolicyEngine
from api.policy.resources import principal_entity


class Authorizer:
    def __init__(self, engine: PolicyEngine, principal: Principal, audit: AuditCollector) -> None:
        self._engine = engine
        self._principal = principal
        self._entity = principal_entity(principal)
        self._audit = audit

    @property
    def policy_version(self) -> str:
        return self._engine.version

    def decide(self, action: str, resource: Entity) -> Decision:
        decision = self._engine.decide(self._entity, action, resource, self._principal.scopes)
        self._audit.decided(decision.allowed, decision.policy_ids)
        return decision

    def decide_many(self, action: str, resources: Sequence[Entity]) -> list[Decision]:
        decisions = self._engine.decide_many(
            self._entity, [(action, resource) for resource in resources], self._principal.scopes
        )
        for decision in decisions:
            self._audit.decided(decision.allowed, decision.policy_ids)
        return decisions

    def require(self, action: str, resource: Entity) -> None:
        """Raise Forbidden unless the policies allow ``action`` on ``resource``."""
        if not self.decide(action, resource).allowed:
            raise Forbidden(f"your access does not permit {action} here")
