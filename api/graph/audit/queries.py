"""Queries for auditors."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import relay

from api.audit.entries import GENESIS_HASH, ChainBreak, check_links
from api.auth.principal import Principal, PrincipalKind
from api.domain.errors import InvalidInput, NotFound
from api.graph.audit.types import (
    AccessExplanation,
    AuditChainVerification,
    AuditDecision,
    AuditRecord,
    AuditRecordConnection,
    AuditRecordEdge,
    Policy,
    PolicySet,
    PolicyVersion,
)
from api.graph.context import Info
from api.graph.ids import decode_id
from api.policy import resources
from api.policy.engine import Entity
from api.repositories.audit import NEWEST_FIRST, AuditFilter, AuditRepository
from api.repositories.sql import encode_cursor, page_request


@strawberry.input
class AuditFilterInput:
    subject: str | None = None
    resource: str | None = strawberry.field(
        default=None, description='A resource as recorded, e.g. "Incident:42".'
    )
    decision: AuditDecision | None = None
    category: str | None = None
    occurred_from: datetime | None = None
    occurred_before: datetime | None = None


@strawberry.input(description="A principal to explain a decision for.")
class PrincipalInput:
    kind: str = strawberry.field(description="staff, service, licensee or auditor")
    subject: str = "explained-principal"
    bureau_code: str | None = None
    roles: list[str] = strawberry.field(default_factory=list)
    scopes: list[str] = strawberry.field(default_factory=list)


def _policies(info: Info, ids: list[str] | tuple[str, ...]) -> list[Policy]:
    documents = {d.policy_id: d for d in info.context.resources.policy.documents}
    return [
        Policy(id=d.policy_id, description=d.description, file=d.file, text=d.text)
        for d in (documents[i] for i in ids if i in documents)
    ]


@strawberry.type
class AuditQueries:
    @strawberry.federation.field(
        description="Access records, newest first; filter by principal, resource, time, decision.",
        requires_scopes=[["audit:read"]],
    )
    async def audit_records(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: AuditFilterInput | None = None,
    ) -> AuditRecordConnection:
        info.context.authorize("ReadAuditTrail", resources.AUDIT_TRAIL)
        settings = info.context.resources.settings
        request = page_request(
            NEWEST_FIRST,
            first=first,
            after=after,
            last=None,
            before=None,
            default_size=20,
            max_size=settings.max_page_size,
        )
        value = filter or AuditFilterInput()
        where = AuditFilter(
            subject=value.subject,
            resource=value.resource,
            decision=value.decision.value if value.decision else None,
            category=value.category,
            occurred_from=value.occurred_from,
            occurred_before=value.occurred_before,
        )
        repository = AuditRepository(info.context.uow)
        page = await repository.page(where, request)
        edges = [
            AuditRecordEdge(
                cursor=encode_cursor(NEWEST_FIRST, [row.seq]), node=AuditRecord.from_row(row)
            )
            for row in page.items
        ]
        info_ = relay.PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        )
        return AuditRecordConnection(edges=edges, page_info=info_)

    @strawberry.federation.field(
        description="Recompute the audit chain and report the first broken link, if any.",
        requires_scopes=[["audit:read"]],
    )
    async def verify_audit_chain(
        self, info: Info, from_seq: int = 1, to_seq: int | None = None
    ) -> AuditChainVerification:
        info.context.authorize("ReadAuditTrail", resources.AUDIT_TRAIL)
        repository = AuditRepository(info.context.uow)
        last = await repository.head()
        to_seq = last if to_seq is None else min(to_seq, last)
        if from_seq < 1 or from_seq > max(to_seq, 1):
            raise InvalidInput("fromSeq", f"must be between 1 and {max(to_seq, 1)}")
        previous = GENESIS_HASH if from_seq == 1 else await repository.previous_hash(from_seq - 1)
        if previous is None:
            return AuditChainVerification(
                intact=False, checked=0, first_seq=from_seq, last_seq=to_seq,
                first_broken_seq=from_seq - 1, reason="the record before the range is missing",
            )  # fmt: skip
        checked = 0
        expected = from_seq
        async_records = repository.stream(from_seq, to_seq)
        batch = []
        async for record in async_records:
            batch.append(record)
            if len(batch) >= 1000:
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
            return AuditChainVerification(
                intact=False, checked=checked, first_seq=from_seq, last_seq=to_seq,
                first_broken_seq=from_seq + checked, reason="records are missing",
            )  # fmt: skip
        return AuditChainVerification(
            intact=True, checked=checked, first_seq=from_seq, last_seq=to_seq,
            first_broken_seq=None, reason=None,
        )  # fmt: skip

    @strawberry.federation.field(
        description="The policy set in force, with its version and text.",
        requires_scopes=[["audit:read"]],
    )
    def policy_set(self, info: Info) -> PolicySet:
        info.context.authorize("ReadPolicies", resources.POLICY_STORE)
        engine = info.context.resources.policy
        return PolicySet(
            version=engine.version,
            schema=engine.schema_text,
            text=engine.text,
            policies=_policies(info, [d.policy_id for d in engine.documents]),
        )

    @strawberry.federation.field(
        description="Every policy-set version the service has run with.",
        requires_scopes=[["audit:read"]],
    )
    async def policy_versions(self, info: Info) -> list[PolicyVersion]:
        info.context.authorize("ReadPolicies", resources.POLICY_STORE)
        rows = await AuditRepository(info.context.uow).policy_versions()
        return [PolicyVersion(**dict(row)) for row in rows]

    @strawberry.federation.field(
        description=(
            "Would the policies let this principal take this action on this resource, and why? "
            "The resource is an Incident or Bureau ID, or a collection: incidents, assets."
        ),
        requires_scopes=[["audit:read"]],
    )
    async def explain_access(
        self, info: Info, principal: PrincipalInput, action: str, resource: str
    ) -> AccessExplanation:
        info.context.authorize("ExplainAccess", resources.POLICY_STORE)
        try:
            kind = PrincipalKind(principal.kind)
        except ValueError:
            raise InvalidInput(
                "principal.kind", "must be staff, service, licensee or auditor"
            ) from None
        engine = info.context.resources.policy
        bureaus = {b.id for b in engine.bureaus}
        if principal.bureau_code is not None and principal.bureau_code not in bureaus:
            raise InvalidInput("principal.bureauCode", f"unknown bureau {principal.bureau_code!r}")
        subject = Principal(
            subject=principal.subject,
            kind=kind,
            bureau_code=principal.bureau_code,
            roles=frozenset(principal.roles),
            scopes=frozenset(principal.scopes),
        )
        target = await _resource(info, resource)
        decision = engine.decide(
            resources.principal_entity(subject), action, target, subject.scopes
        )
        return AccessExplanation(
            allowed=decision.allowed,
            decision=AuditDecision.ALLOW if decision.allowed else AuditDecision.DENY,
            policies=_policies(info, decision.policy_ids),
            errors=list(decision.errors),
            resource=target.uid,
        )


def _broken(outcome: ChainBreak, first: int, last: int) -> AuditChainVerification:
    # Records are checked in order, so every record before the broken one was sound.
    return AuditChainVerification(
        intact=False,
        checked=outcome.seq - first,
        first_seq=first,
        last_seq=last,
        first_broken_seq=outcome.seq,
        reason=outcome.reason,
    )


async def _resource(info: Info, value: str) -> Entity:
    collections = {"incidents": resources.INCIDENTS, "assets": resources.ASSETS}
    if value in collections:
        return collections[value]
    if value == "audit":
        return resources.AUDIT_TRAIL
    if value == "policies":
        return resources.POLICY_STORE
    try:
        return await _incident(info, decode_id(value, "Incident", "resource"))
    except InvalidInput:
        pass
    bureau_id = decode_id(value, "Bureau", "resource")
    record = await info.context.loaders.bureaus.by_id.load(bureau_id)
    if record is None:
        raise NotFound("bureau", bureau_id)
    return resources.bureau(record.code)


async def _incident(info: Info, incident_id: int) -> Entity:
    facts = await info.context.loaders.incidents.facts.load(incident_id)
    if facts is None:
        raise NotFound("incident", incident_id)
    return resources.incident_entity(facts)
