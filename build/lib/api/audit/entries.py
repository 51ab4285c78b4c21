"""What one audit record says, and how the chain of records is checked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from api.auth.principal import Principal

GENESIS_HASH = hashlib.sha256(b"").digest()
# The record's columns that the payload also carries; verification checks they agree.
MIRRORED = (
    "occurred_at",
    "request_id",
    "subject",
    "client_id",
    "bureau",
    "principal_kind",
    "category",
    "operation",
    "document_hash",
    "resource_ids",
    "decision",
    "policy_ids",
    "policy_version",
    "personal_data",
)


@dataclass(slots=True)
class AuditEntry:
    occurred_at: datetime
    request_id: str
    subject: str
    client_id: str | None
    bureau: str | None
    principal_kind: str
    category: str
    operation: str
    document_hash: str | None
    resource_ids: list[str]
    decision: str
    policy_ids: list[str]
    policy_version: str
    personal_data: bool
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        principal: Principal,
        *,
        request_id: str,
        category: str,
        operation: str,
        decision: str,
        policy_version: str,
        resource_ids: Iterable[str] = (),
        policy_ids: Iterable[str] = (),
        personal_data: bool = False,
        document_hash: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """The record of one access by ``principal``, stamped now. Every audit record is made
        here: GraphQL operations, REST calls, refusals and the token endpoint alike."""
        return cls(
            occurred_at=datetime.now(UTC),
            request_id=request_id,
            subject=principal.subject,
            client_id=principal.client_id,
            bureau=principal.bureau_code,
            principal_kind=principal.kind.value,
            category=category,
            operation=operation,
            document_hash=document_hash,
            resource_ids=sorted(resource_ids),
            decision=decision,
            policy_ids=sorted(policy_ids),
            policy_version=policy_version,
            personal_data=personal_data,
            details=details or {},
        )

    def payload(self) -> str:
        """The canonical text the hash covers (sorted keys, UTC timestamps)."""
        body = {name: getattr(self, name) for name in MIRRORED}
        body["occurred_at"] = self.occurred_at.isoformat()
        body["details"] = self.details
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()


def link_hash(previous: bytes, seq: int, payload: str) -> bytes:
    return hashlib.sha256(previous + f"{seq}|{payload}".encode()).digest()


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class StoredRecord:
    seq: int
    columns: dict[str, Any]
    payload: str
    prev_hash: bytes
    hash: bytes


def check_links(
    records: Iterable[StoredRecord], previous: bytes, expected_seq: int
) -> ChainBreak | int:
    """Check consecutive records; return the first break, or how many records were checked."""
    checked = 0
    for record in records:
        if record.seq != expected_seq:
            return ChainBreak(expected_seq, f"record {expected_seq} is missing")
        if record.prev_hash != previous:
            return ChainBreak(record.seq, "it does not link to the record before it")
        if link_hash(previous, record.seq, record.payload) != record.hash:
            return ChainBreak(record.seq, "its content does not match its hash")
        problem = _columns_disagree(record)
        if problem:
            return ChainBreak(record.seq, problem)
        previous = record.hash
        expected_seq += 1
        checked += 1
    return checked


def _columns_disagree(record: StoredRecord) -> str | None:
    try:
        body = orjson.loads(record.payload)
    except orjson.JSONDecodeError:
        return "its payload is not readable"
    for name in MIRRORED:
        stored = record.columns[name]
        if isinstance(stored, datetime):
            stored = stored.isoformat()
        if isinstance(stored, Sequence) and not isinstance(stored, str):
            stored = list(stored)
        if body.get(name) != stored:
            return f"its column {name} differs from what was recorded"
    return None
