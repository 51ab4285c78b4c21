"""Per-request authorization: asks the policy engine and remembers what was decided for audit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from api.audit.collector import AuditCollector
from api.auth.principal import Principal
from api.domain.errors import Forbidden
from api.policy.engine import Decision, Entity, PolicyEngine
from api.policy.resources import principal_entity
from api.timing import Timings


class Authorizer:
    def __init__(
        self,
        engine: PolicyEngine,
        principal: Principal,
        audit: AuditCollector,
        timings: Timings | None = None,
    ) -> None:
        self._engine = engine
        self._principal = principal
        self._entity = principal_entity(principal)
        self._audit = audit
        self._timings = timings or Timings()
        # A request asks the same question many times (a nested field on every row): the
        # first answer is kept for the rest of the request, and audited once.
        self._answers: dict[tuple[str, Entity, tuple[tuple[str, str], ...]], Decision] = {}
        self._foreseen: dict[tuple[str, Entity, tuple[tuple[str, str], ...]], Decision] = {}

    @property
    def policy_version(self) -> str:
        return self._engine.version

    def decide(
        self, action: str, resource: Entity, context: Mapping[str, str] | None = None
    ) -> Decision:
        key = (action, resource, tuple(sorted(context.items())) if context else ())
        decision = self._answers.get(key)
        if decision is None:
            decision = self._foreseen.pop(key, None) or self._ask(action, resource, context)
            self._answers[key] = decision
            self._audit.decided(decision.allowed, decision.policy_ids)
        return decision

    def foresee(self, action: str, resource: Entity) -> bool:
        """Whether the policies allow ``action`` on ``resource``, without it counting as a
        decision of the request: for a read made ahead in case a field needs it (see
        ``api.repositories.companions``); the field's own ``decide`` is what is audited."""
        key = (action, resource, ())
        decision = self._answers.get(key) or self._foreseen.get(key)
        if decision is None:
            decision = self._foreseen[key] = self._ask(action, resource, None)
        return decision.allowed

    def _ask(self, action: str, resource: Entity, context: Mapping[str, str] | None) -> Decision:
        with self._timings.measure("policy"):
            return self._engine.decide(
                self._entity, action, resource, self._principal.scopes, context
            )

    def decide_many(self, action: str, resources: Sequence[Entity]) -> list[Decision]:
        with self._timings.measure("policy"):
            decisions = self._engine.decide_many(
                self._entity, [(action, r) for r in resources], self._principal.scopes
            )
        for decision in decisions:
            self._audit.decided(decision.allowed, decision.policy_ids)
        return decisions

    def require(
        self, action: str, resource: Entity, context: Mapping[str, str] | None = None
    ) -> None:
        """Raise Forbidden unless the policies allow ``action`` on ``resource``."""
        if not self.decide(action, resource, context).allowed:
            raise Forbidden(f"your access does not permit {action} here")
