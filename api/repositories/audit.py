"""The audit trail: appended through append_audit(), searched by auditors, verified end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.audit.entries import MIRRORED, AuditEntry, StoredRecord
from api.db.literals import call
from api.db.unit_of_work import UnitOfWork
from api.repositories.sql import Conditions, Ordering, Page, PageRequest, finish_page

APPEND = """
SELECT lighthouse.append_audit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
"""
APPEND_MANY = "SELECT lighthouse.append_audits($1::lighthouse.audit_entry[])"
CHAIN = "SELECT lighthouse.chain_audits($1, $2)"
CHAIN_BATCH = 10_000  # records linked in one transaction at most (the rest by the next)
RECORD_COLUMNS = ", ".join(("seq", *MIRRORED, "payload", "prev_hash", "hash"))
CHAIN_SLICE = f"""
SELECT {RECORD_COLUMNS} FROM audit_record WHERE seq >= $1 ORDER BY seq LIMIT $2
"""
PREVIOUS_HASH = "SELECT hash FROM audit_record WHERE seq = $1"
HEAD = "SELECT last_seq, last_hash FROM lighthouse.audit_head()"
LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM audit_record"
RECORD_HASH = "SELECT hash FROM audit_record WHERE seq = $1"
INSERT_ANCHOR = """
INSERT INTO audit_anchor (seq, hash, anchored_at, signature) VALUES ($1, $2, $3, $4)
"""
ANCHORS = """
SELECT seq, hash, anchored_at, signature FROM audit_anchor ORDER BY anchored_at DESC LIMIT $1
"""
UPSERT_POLICY_VERSION = """
INSERT INTO policy_version (version, policies) VALUES ($1, $2)
ON CONFLICT (version) DO UPDATE SET last_seen_at = now()
"""
POLICY_VERSIONS = """
SELECT version, first_seen_at, last_seen_at FROM policy_version ORDER BY first_seen_at
"""
POLICY_TEXT = "SELECT policies FROM policy_version WHERE version = $1"

NEWEST_FIRST = Ordering("NEWEST_FIRST", ("seq",), descending=True, types=(int,))


APPEND_TYPES = (
    "timestamptz", "text", "text", "text", "text", "text", "text", "text", "text", "text[]",
    "text", "text[]", "text", "boolean", "text",
)  # fmt: skip


def append_statement(entry: AuditEntry) -> str:
    """``APPEND`` for ``entry`` as one statement without parameters (its values as literals)."""
    arguments = append_arguments(entry)
    return call("lighthouse.append_audit", list(zip(arguments, APPEND_TYPES, strict=True)))  # type: ignore[arg-type]


def append_arguments(entry: AuditEntry) -> tuple[object, ...]:
    return (
        entry.occurred_at,
        entry.request_id,
        entry.subject,
        entry.client_id,
        entry.bureau,
        entry.principal_kind,
        entry.category,
        entry.operation,
        entry.document_hash,
        entry.resource_ids,
        entry.decision,
        entry.policy_ids,
        entry.policy_version,
        entry.personal_data,
        entry.payload(),
    )


@dataclass(frozen=True, slots=True)
class AuditFilter:
    subject: str | None = None
    resource: str | None = None
    decision: str | None = None
    category: str | None = None
    occurred_from: datetime | None = None
    occurred_before: datetime | None = None

    def conditions(self) -> Conditions:
        where = Conditions()
        if self.subject is not None:
            where.add("subject = {}", self.subject)
        if self.resource is not None:
            where.add("resource_ids @> ARRAY[{}]::text[]", self.resource)
        if self.decision is not None:
            where.add("decision = {}", self.decision)
        if self.category is not None:
            where.add("category = {}", self.category)
        if self.occurred_from is not None:
            where.add("occurred_at >= {}", self.occurred_from)
        if self.occurred_before is not None:
            where.add("occurred_at < {}", self.occurred_before)
        return where


@dataclass(frozen=True, slots=True)
class AuditRecordRow:
    seq: int
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
    payload: str
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class AnchorRow:
    seq: int
    hash: bytes
    anchored_at: datetime
    signature: str


async def chain_pending(db: asyncpg.Connection | asyncpg.Pool) -> int:
    """Link the pending records (everyone's committed ones, and this connection's own) into the
    hash chain, under the head's lock; the last sequence number."""
    return int(await db.fetchval(CHAIN, CHAIN_BATCH, False))


# Sent in the COMMIT's round trip by a unit of work that appended records (``after_commit``):
# links them in a transaction of its own whose commit need not wait for the disk, and never
# raises (see migration 0009).
LINK_COMMITTED = f"SELECT lighthouse.link_committed({CHAIN_BATCH})"


class AuditRepository:
    def __init__(self, db: UnitOfWork | asyncpg.Connection | asyncpg.Pool) -> None:
        self._db = db

    async def append(self, entry: AuditEntry) -> None:
        """Append a record in the unit of work's transaction, as it commits (in the COMMIT's
        round trip, see ``UnitOfWork.at_commit``); it is linked into the chain right after
        (``LINK_COMMITTED``). On a bare connection: now, and linked at once."""
        if isinstance(self._db, UnitOfWork):
            self._db.at_commit(append_statement(entry))
            self._db.after_commit(LINK_COMMITTED)
            return
        await self._db.fetchval(APPEND, *append_arguments(entry))
        await chain_pending(self._db)

    async def append_many(self, entries: Sequence[AuditEntry]) -> None:
        """Append several records in the order given (one statement)."""
        await self._db.execute(APPEND_MANY, [append_arguments(entry) for entry in entries])
        await self._chain_after()

    async def link_pending(self) -> int:
        """Link every committed pending record now; the last sequence number."""
        return await chain_pending(self._db)

    async def _chain_after(self) -> None:
        if isinstance(self._db, UnitOfWork):
            self._db.after_commit(LINK_COMMITTED)
        else:  # a bare connection (the CLI's, a test's): linked at once, in its transaction
            await chain_pending(self._db)

    async def page(self, where: AuditFilter, request: PageRequest) -> Page[AuditRecordRow]:
        conditions = where.conditions()
        if request.cursor is not None:
            NEWEST_FIRST.after(conditions, request.cursor, request.backward)
        limit = conditions.param(request.limit + 1)
        query = (
            f"SELECT {RECORD_COLUMNS} FROM audit_record WHERE {conditions.sql()}"
            f" ORDER BY {NEWEST_FIRST.order_by(request.backward)} LIMIT {limit}"
        )
        rows = await self._db.fetch(query, *conditions.args)
        return finish_page([AuditRecordRow(**row) for row in rows], request)

    async def count(self, where: AuditFilter) -> int:
        conditions = where.conditions()
        query = f"SELECT count(*) FROM audit_record WHERE {conditions.sql()}"
        return int(await self._db.fetchval(query, *conditions.args))

    async def head(self) -> tuple[int, bytes]:
        """The chain's head: the sequence number and hash the next record will link to."""
        row = await self._db.fetchrow(HEAD)
        assert row is not None
        return int(row["last_seq"]), bytes(row["last_hash"])

    async def last_seq(self) -> int:
        """The largest sequence number stored (records past the head mean tampering)."""
        return int(await self._db.fetchval(LAST_SEQ))

    async def record_hash(self, seq: int) -> bytes | None:
        value = await self._db.fetchval(RECORD_HASH, seq)
        return bytes(value) if value is not None else None

    async def add_anchor(self, seq: int, hash: bytes, at: datetime, signature: str) -> None:
        await self._db.execute(INSERT_ANCHOR, seq, hash, at, signature)

    async def anchors(self, limit: int) -> list[AnchorRow]:
        return [AnchorRow(**row) for row in await self._db.fetch(ANCHORS, limit)]

    async def previous_hash(self, seq: int) -> bytes | None:
        value = await self._db.fetchval(PREVIOUS_HASH, seq)
        return bytes(value) if value is not None else None

    async def stream(
        self, first_seq: int, last_seq: int, chunk: int = 2000
    ) -> AsyncIterator[StoredRecord]:
        seq = first_seq
        while seq <= last_seq:
            rows = await self._db.fetch(CHAIN_SLICE, seq, min(chunk, last_seq - seq + 1))
            if not rows:
                return
            for row in rows:
                yield StoredRecord(
                    seq=row["seq"],
                    columns={name: row[name] for name in MIRRORED},
                    payload=row["payload"],
                    prev_hash=bytes(row["prev_hash"]),
                    hash=bytes(row["hash"]),
                )
            seq = rows[-1]["seq"] + 1

    async def record_policy_version(self, version: str, text: str) -> None:
        await self._db.execute(UPSERT_POLICY_VERSION, version, text)

    async def policy_versions(self) -> Sequence[asyncpg.Record]:
        return await self._db.fetch(POLICY_VERSIONS)

    async def policy_text(self, version: str) -> str | None:
        value = await self._db.fetchval(POLICY_TEXT, version)
        return str(value) if value is not None else None
