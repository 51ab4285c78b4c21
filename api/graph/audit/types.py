"""GraphQL types of the audit trail and the policy set."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum

import orjson
import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from api.repositories.audit import AuditRecordRow


@strawberry.enum
class AuditDecision(Enum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    PARTIAL = "PARTIAL"


@strawberry.type(description="One access to the platform, as recorded in the audit chain.")
class AuditRecord:
    seq: int
    occurred_at: datetime
    request_id: str
    subject: str
    client_id: str | None
    bureau: str | None
    principal_kind: str
    category: str = strawberry.field(
        description="graphql, subscription-event, token, authentication…"
    )
    operation: str
    document_hash: str | None
    resource_ids: list[str]
    decision: AuditDecision
    policy_ids: list[str]
    policy_version: str
    personal_data: bool
    details: JSON
    hash: str = strawberry.field(
        description="SHA-256 of the previous hash, the sequence and the payload."
    )

    @classmethod
    def from_row(cls, row: AuditRecordRow) -> AuditRecord:
        payload = orjson.loads(row.payload)
        return cls(
            seq=row.seq,
            occurred_at=row.occurred_at,
            request_id=row.request_id,
            subject=row.subject,
            client_id=row.client_id,
            bureau=row.bureau,
            principal_kind=row.principal_kind,
            category=row.category,
            operation=row.operation,
            document_hash=row.document_hash,
            resource_ids=list(row.resource_ids),
            decision=AuditDecision(row.decision),
            policy_ids=list(row.policy_ids),
            policy_version=row.policy_version,
            personal_data=row.personal_data,
            details=payload.get("details", {}),
            hash=row.hash.hex(),
        )


@strawberry.type
class AuditRecordEdge:
    cursor: str
    node: AuditRecord


@strawberry.type
class AuditRecordConnection:
    edges: list[AuditRecordEdge]
    page_info: relay.PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many records match the filter (one extra query).")
    async def total_count(self) -> int:
        return await self.count()


@strawberry.type(description="The result of checking the audit chain link by link.")
class AuditChainVerification:
    intact: bool
    checked: int = strawberry.field(description="Records checked.")
    first_seq: int
    last_seq: int
    first_broken_seq: int | None = strawberry.field(description="The first record that fails.")
    reason: str | None


@strawberry.type(
    description="A signed statement of the audit chain's head at a moment (an anchor): a copy "
    "kept outside the database proves later that no record before it was changed or removed "
    "(`lighthouse audit check-anchor`)."
)
class AuditAnchor:
    seq: int = strawberry.field(description="The last record the anchor covers.")
    hash: str = strawberry.field(description="That record's chain hash (hex).")
    anchored_at: datetime
    token: str = strawberry.field(description="The anchor itself: a JWS signed by the gateway.")


@strawberry.type(description="One policy, as written in policies/.")
class Policy:
    id: str
    description: str
    file: str
    text: str


@strawberry.type(description="The policy set this service runs with.")
class PolicySet:
    version: str = strawberry.field(
        description="SHA-256 (first 16 hex digits) of schema and policies."
    )
    schema: str
    text: str
    policies: list[Policy]


@strawberry.type
class PolicyVersion:
    version: str
    first_seen_at: datetime
    last_seen_at: datetime


@strawberry.type(description="What the policies decide for a principal, action and resource.")
class AccessExplanation:
    allowed: bool
    decision: AuditDecision
    policies: list[Policy] = strawberry.field(description="The policies that decided it.")
    reasons: list[str] = strawberry.field(
        description="Why, in words: each deciding policy (permitting, or forbidding), or that "
        "none permits it (Cedar denies what no policy permits)."
    )
    errors: list[str]
    resource: str
