"""Open311 clients (the apps holding the city's API keys) and the requests they submitted."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.db.errors import is_unique_violation
from api.db.unit_of_work import UnitOfWork
from api.domain.errors import InvalidInput

CLIENT_COLUMNS = """
c.id, c.name, c.bureau_id, b.code AS bureau_code, c.may_submit, c.issued_by, c.issued_at,
c.revoked_at
"""
CLIENT_BY_DIGEST = f"""
SELECT {CLIENT_COLUMNS} FROM open311_client c JOIN bureau b ON b.id = c.bureau_id
WHERE c.key_digest = $1
"""
CLIENTS = f"""
SELECT {CLIENT_COLUMNS} FROM open311_client c JOIN bureau b ON b.id = c.bureau_id ORDER BY c.id
"""
ISSUE = """
INSERT INTO open311_client (name, key_digest, bureau_id, may_submit, issued_by)
SELECT $1, $2, b.id, $4, $5 FROM bureau b WHERE b.code = $3
RETURNING id
"""
REVOKE = """
UPDATE open311_client SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING id
"""
RECORD_REQUEST = """
INSERT INTO open311_request (incident_id, token, client_id, address) VALUES ($1, $2, $3, $4)
"""
REQUESTS_OF = """
SELECT incident_id, token, address FROM open311_request WHERE incident_id = ANY($1::bigint[])
"""
BY_TOKEN = "SELECT incident_id FROM open311_request WHERE token = $1"


@dataclass(frozen=True, slots=True)
class Open311Client:
    id: int
    name: str
    bureau_id: int
    bureau_code: str
    may_submit: bool
    issued_by: str
    issued_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class SubmittedRequest:
    """What Open311 adds to an incident it submitted."""

    incident_id: int
    token: uuid.UUID
    address: str | None


class Open311Clients:
    """The clients' table carries no per-bureau rows: it is read on a plain pool (a key is
    looked up before its caller's identity is known) and written by the city's operators."""

    def __init__(self, connection: asyncpg.Connection | asyncpg.Pool) -> None:
        self._db = connection

    async def by_digest(self, digest: bytes) -> Open311Client | None:
        row = await self._db.fetchrow(CLIENT_BY_DIGEST, digest)
        return Open311Client(**row) if row is not None else None

    async def all(self) -> list[Open311Client]:
        return [Open311Client(**row) for row in await self._db.fetch(CLIENTS)]

    async def issue(
        self, name: str, digest: bytes, bureau_code: str, may_submit: bool, issued_by: str
    ) -> int:
        try:
            issued = await self._db.fetchval(
                ISSUE, name, digest, bureau_code, may_submit, issued_by
            )
        except asyncpg.UniqueViolationError as error:
            if is_unique_violation(error, "open311_client_name_key"):
                raise InvalidInput("name", f"a client named {name!r} exists") from None
            raise
        except asyncpg.CheckViolationError:
            raise InvalidInput("name", "must be 1 to 200 characters") from None
        if issued is None:
            raise InvalidInput("bureau", f"unknown bureau {bureau_code!r}")
        return int(issued)

    async def revoke(self, name: str) -> bool:
        return await self._db.fetchval(REVOKE, name) is not None


class Open311Requests:
    """Requests submitted through Open311, under the caller's identity (row-level security
    shows a request with the incident it became)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def record(
        self, incident_id: int, token: uuid.UUID, client_id: int, address: str | None
    ) -> None:
        await self._uow.execute(RECORD_REQUEST, incident_id, token, client_id, address)

    async def of(self, incident_ids: Sequence[int]) -> dict[int, SubmittedRequest]:
        rows = await self._uow.fetch(REQUESTS_OF, list(incident_ids))
        return {row["incident_id"]: SubmittedRequest(**row) for row in rows}

    async def by_token(self, token: uuid.UUID) -> int | None:
        found = await self._uow.fetchval(BY_TOKEN, token)
        return int(found) if found is not None else None
