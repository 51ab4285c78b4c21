"""The audit trail for auditors: access records, chain verification, policies and "who may do
what" answers — shared by the graph and any REST endpoint for auditors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from api.access.scope import AccessScope
from api.audit.entries import GENESIS_HASH, ChainBreak, StoredRecord, check_links
from api.auth.principal import Principal
from api.domain.errors import InvalidInput, NotFound
from api.policy import resources
from api.policy.engine import Decision, Entity, PolicyEngine
from api.repositories.audit import AuditFilter, AuditRecordRow, AuditRepository
from api.repositories.bureaus import BureauRepository
from api.repositories.incidents import IncidentRepository
from api.repositories.sql import Page, PageRequest

VERIFY_BATCH = 1000
COLLECTIONS = {
    "incidents": resources.INCIDENTS,
    "assets": resources.ASSETS,
    "audit": resources.AUDIT_TRAIL,
    "policies": resources.POLICY_STORE,
}


@dataclass(frozen=True, slots=True)
class ChainVerification:
    intact: bool
    checked: int
    first_seq: int
    last_seq: int
    first_broken_seq: int | None = None
    reason: str | None = None


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
        """Recompute the chain from ``from_seq`` to ``to_seq`` (the newest record by default)
        and report the first broken link."""
        self._access.authorize("ReadAuditTrail", resources.AUDIT_TRAIL)
        repository = self._repository
        last = await repository.head()
        to_seq = last if to_seq is None else min(to_seq, last)
        if from_seq < 1 or from_seq > max(to_seq, 1):
            raise InvalidInput("fromSeq", f"must be between 1 and {max(to_seq, 1)}")
        previous = GENESIS_HASH if from_seq == 1 else await repository.previous_hash(from_seq - 1)
        if previous is None:
            return ChainVerification(
                False, 0, from_seq, to_seq, from_seq - 1, "the record before the range is missing"
            )
        checked = 0
        expected = from_seq
        batch: list[StoredRecord] = []
        async for record in repository.stream(from_seq, to_seq):
            batch.append(record)
            if len(batch) >= VERIFY_BATCH:
                outcome = check_links(batch, previous, expected)
                if isinstance(outcome, ChainBreak):
                    return _broken(outcome, from_seq, to_seq)
                checked += outcome
                previous, expected, batch = batch[-1].hash, batch[-1].seq + 1, []
        outcome = check_links(batch, previous, expected)
        if isinstance(outcome, ChainBreak):
            return _broken(outcome, from_seq, to_seq)
        checked += outcome
        if checked != to_seq - from_seq + 1 and to_seq >= from_seq:
            return ChainVerification(
                False, checked, from_seq, to_seq, from_seq + checked, "records are missing"
            )
        return ChainVerification(True, checked, from_seq, to_seq)

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


def _broken(outcome: ChainBreak, first: int, last: int) -> ChainVerification:
    # Records are checked in order, so every record before the broken one was sound.
    return ChainVerification(False, outcome.seq - first, first, last, outcome.seq, outcome.reason)
