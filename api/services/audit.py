"""The audit trail for auditors: access records, chain verification, policies and "who may do
what" answers — shared by the graph and any REST endpoint for auditors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from api.access.scope import AccessScope
from api.auth.principal import Principal
from api.domain.errors import InvalidInput, NotFound
from api.policy import resources
from api.policy.engine import Decision, Entity, PolicyEngine
from api.repositories.audit import AuditFilter, AuditRecordRow, AuditRepository
from api.repositories.bureaus import BureauRepository
from api.repositories.incidents import IncidentRepository
from api.repositories.sql import Page, PageRequest
from api.services.audit_chain import ChainVerification, verify_chain

COLLECTIONS = {
    "incidents": resources.INCIDENTS,
    "assets": resources.ASSETS,
    "audit": resources.AUDIT_TRAIL,
    "policies": resources.POLICY_STORE,
}


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """What an explanation is about: a collection (``incidents``…) or an Incident or Bureau."""

    collection: str | None = None
    incident_id: int | None = None
    bureau_id: int | None = None


class AuditTrail:
    def __init__(self, access: AccessScope, policy: PolicyEngine) -> None:
        self._access = access
        self._policy = policy
        self._repository = AuditRepository(access.uow)

    async def records(self, where: AuditFilter, request: PageRequest) -> Page[AuditRecordRow]:
        self._access.authorize("ReadAuditTrail", resources.AUDIT_TRAIL)
        return await self._repository.page(where, request)

    async def verify(self, from_seq: int, to_seq: int | None) -> ChainVerification:
        """Recompute the chain from ``from_seq`` to ``to_seq`` (the head by default) and report
        the first broken link."""
        self._access.authorize("ReadAuditTrail", resources.AUDIT_TRAIL)
        return await verify_chain(self._repository, from_seq, to_seq)

    def policy_set(self) -> PolicyEngine:
        self._access.authorize("ReadPolicies", resources.POLICY_STORE)
        return self._policy

    async def policy_versions(self) -> Sequence[asyncpg.Record]:
        self._access.authorize("ReadPolicies", resources.POLICY_STORE)
        return await self._repository.policy_versions()

    async def explain(
        self, principal: Principal, action: str, resource: ResourceRef
    ) -> tuple[Decision, Entity]:
        """What the policies would decide for ``principal`` taking ``action`` on ``resource``."""
        self._access.authorize("ExplainAccess", resources.POLICY_STORE)
        bureaus = {b.id for b in self._policy.bureaus}
        if principal.bureau_code is not None and principal.bureau_code not in bureaus:
            raise InvalidInput("principal.bureauCode", f"unknown bureau {principal.bureau_code!r}")
        target = await self._entity(resource)
        decision = self._policy.decide(
            resources.principal_entity(principal), action, target, principal.scopes
        )
        return decision, target

    async def _entity(self, resource: ResourceRef) -> Entity:
        uow = self._access.uow
        if resource.collection is not None:
            found = COLLECTIONS.get(resource.collection)
            if found is None:
                raise InvalidInput("resource", f"unknown collection {resource.collection!r}")
            return found
        if resource.incident_id is not None:
            facts = (await IncidentRepository(uow).facts([resource.incident_id])).get(
                resource.incident_id
            )
            if facts is None:
                raise NotFound("incident", resource.incident_id)
            return resources.incident_entity(facts)
        assert resource.bureau_id is not None
        record = (await BureauRepository(uow).by_ids([resource.bureau_id])).get(resource.bureau_id)
        if record is None:
            raise NotFound("bureau", resource.bureau_id)
        return resources.bureau(record.code)
