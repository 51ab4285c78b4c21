"""The audit trail for auditors: access records, chain verification, policies and "who may do
what" answers — shared by the graph and any REST endpoint for auditors."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from api.access.scope import AccessScope
from api.auth.principal import Principal
from api.domain.errors import InvalidInput, NotFound
from api.domain.open311 import incident_id
from api.policy import resources
from api.policy.engine import Decision, Entity, PolicyEngine
from api.repositories.audit import AnchorRow, AuditFilter, AuditRecordRow, AuditRepository
from api.repositories.bureaus import BureauRepository
from api.repositories.incidents import IncidentRepository
from api.repositories.sql import Page, PageRequest
from api.services.audit_chain import ChainVerification, verify_chain

# A resource as the trail records it: its type and key ("Incident:42", "Document:sha256:…").
RECORDED = re.compile(r"^[A-Z][A-Za-z]{0,40}:[A-Za-z0-9:._-]{1,200}$")


def recorded_resource(value: str) -> str:
    """The resource ``value`` names, as the trail records it: given in that form, as an ID of
    this API (the same, in base64) or as an incident's case number ("KH-00000042"). An
    InvalidInput says which forms are taken."""
    value = value.strip()
    if RECORDED.match(value):
        return value
    incident = incident_id(value)
    if incident is not None:
        return f"Incident:{incident}"
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    if RECORDED.match(decoded):
        return decoded
    raise InvalidInput(
        "filter.resource",
        'name a resource as recorded ("Incident:42"), by an ID of this API, or by a case number '
        '("KH-00000042")',
    )


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

    async def count(self, where: AuditFilter) -> int:
        self._access.authorize("ReadAuditTrail", resources.AUDIT_TRAIL)
        return await self._repository.count(where)

    async def verify(self, from_seq: int, to_seq: int | None) -> ChainVerification:
        """Recompute the chain from ``from_seq`` to ``to_seq`` (the head by default) and report
        the first broken link."""
        self._access.authorize("ReadAuditTrail", resources.AUDIT_TRAIL)
        return await verify_chain(self._repository, from_seq, to_seq)

    async def anchors(self, limit: int) -> list[AnchorRow]:
        """The newest ``limit`` anchors of the chain, newest first."""
        self._access.authorize("ReadAuditTrail", resources.AUDIT_TRAIL)
        return await self._repository.anchors(limit)

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
        if action not in self._policy.actions:
            known = ", ".join(sorted(self._policy.actions))
            raise InvalidInput(
                "action", f"the policies know no action {action!r}; they know {known}"
            )
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
