"""Queries for auditors."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import relay

from api.auth.principal import Principal, PrincipalKind
from api.domain.errors import InvalidInput
from api.graph.audit.types import (
    AccessExplanation,
    AuditAnchor,
    AuditChainVerification,
    AuditDecision,
    AuditRecord,
    AuditRecordConnection,
    AuditRecordEdge,
    Policy,
    PolicySet,
    PolicyVersion,
)
from api.graph.core.context import Info
from api.graph.core.ids import decode_id
from api.repositories.audit import NEWEST_FIRST, AuditFilter
from api.repositories.sql import encode_cursor, page_request
from api.services.audit import COLLECTIONS, AuditTrail, ResourceRef, recorded_resource


@strawberry.input
class AuditFilterInput:
    subject: str | None = None
    resource: str | None = strawberry.field(
        default=None,
        description='A resource: as recorded ("Incident:42"), an ID of this API, or an '
        'incident\'s case number ("KH-00000042").',
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


def _trail(info: Info) -> AuditTrail:
    return AuditTrail(info.context.access, info.context.resources.policy)


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
        settings = info.context.resources.settings
        request = page_request(
            NEWEST_FIRST,
            first=first,
            after=after,
            last=None,
            before=None,
            default_size=20,
            max_size=settings.graph.max_page_size,
        )
        value = filter or AuditFilterInput()
        where = AuditFilter(
            subject=value.subject,
            resource=None if value.resource is None else recorded_resource(value.resource),
            decision=value.decision.value if value.decision else None,
            category=value.category,
            occurred_from=value.occurred_from,
            occurred_before=value.occurred_before,
        )
        trail = _trail(info)
        page = await trail.records(where, request)
        edges = [
            AuditRecordEdge(
                cursor=encode_cursor(NEWEST_FIRST, [row.seq]), node=AuditRecord.from_row(row)
            )
            for row in page.items
        ]
        page_info = relay.PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        )
        return AuditRecordConnection(
            edges=edges, page_info=page_info, count=lambda: trail.count(where)
        )

    @strawberry.federation.field(
        description="Recompute the audit chain and report the first broken link, if any.",
        requires_scopes=[["audit:read"]],
    )
    async def verify_audit_chain(
        self, info: Info, from_seq: int = 1, to_seq: int | None = None
    ) -> AuditChainVerification:
        outcome = await _trail(info).verify(from_seq, to_seq)
        return AuditChainVerification(
            intact=outcome.intact,
            checked=outcome.checked,
            first_seq=outcome.first_seq,
            last_seq=outcome.last_seq,
            first_broken_seq=outcome.first_broken_seq,
            reason=outcome.reason,
        )

    @strawberry.federation.field(
        description="The chain's newest anchors (signed statements of its head), newest first.",
        requires_scopes=[["audit:read"]],
    )
    async def audit_anchors(self, info: Info, last: int = 5) -> list[AuditAnchor]:
        if not 1 <= last <= 100:
            raise InvalidInput("last", "must be between 1 and 100")
        return [
            AuditAnchor(
                seq=row.seq,
                hash=row.hash.hex(),
                anchored_at=row.anchored_at,
                token=row.signature,
            )
            for row in await _trail(info).anchors(last)
        ]

    @strawberry.federation.field(
        description="The policy set in force, with its version and text.",
        requires_scopes=[["audit:read"]],
    )
    def policy_set(self, info: Info) -> PolicySet:
        engine = _trail(info).policy_set()
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
        rows = await _trail(info).policy_versions()
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
        try:
            kind = PrincipalKind(principal.kind)
        except ValueError:
            raise InvalidInput(
                "principal.kind", "must be staff, service, licensee or auditor"
            ) from None
        subject = Principal(
            subject=principal.subject,
            kind=kind,
            bureau_code=principal.bureau_code,
            roles=frozenset(principal.roles),
            scopes=frozenset(principal.scopes),
        )
        decision, target = await _trail(info).explain(subject, action, _resource(resource))
        policies = _policies(info, decision.policy_ids)
        if decision.allowed:
            reasons = [f"permitted by {p.id}: {p.description}" for p in policies]
        elif policies:
            reasons = [f"forbidden by {p.id}: {p.description}" for p in policies]
        else:
            reasons = [
                f"no policy permits {action} on {target.uid} for this principal "
                "(what no policy permits is denied)"
            ]
        reasons += [f"a policy could not be evaluated: {error}" for error in decision.errors]
        return AccessExplanation(
            allowed=decision.allowed,
            decision=AuditDecision.ALLOW if decision.allowed else AuditDecision.DENY,
            policies=policies,
            reasons=reasons,
            errors=list(decision.errors),
            resource=target.uid,
        )


def _resource(value: str) -> ResourceRef:
    if value in COLLECTIONS:
        return ResourceRef(collection=value)
    try:
        return ResourceRef(incident_id=decode_id(value, "Incident", "resource"))
    except InvalidInput:
        pass
    return ResourceRef(bureau_id=decode_id(value, "Bureau", "resource"))
