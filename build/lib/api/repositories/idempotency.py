"""Idempotency keys for creating mutations: a retried request creates nothing twice."""

from __future__ import annotations

from dataclasses import dataclass

from api.db.unit_of_work import UnitOfWork

# A key is claimed by inserting it; an expired key (older than the TTL) is claimed again in place.
CLAIM = """
INSERT INTO idempotency_key (subject, key, operation, request_hash)
VALUES ($1, $2, $3, $4)
ON CONFLICT (subject, key) DO UPDATE
    SET operation = EXCLUDED.operation, request_hash = EXCLUDED.request_hash,
        resource_id = NULL, created_at = now()
    WHERE idempotency_key.created_at < now() - make_interval(hours => $5)
RETURNING true
"""
LOOKUP = """
SELECT operation, request_hash, resource_id FROM idempotency_key WHERE subject = $1 AND key = $2
"""
REMEMBER = "UPDATE idempotency_key SET resource_id = $3 WHERE subject = $1 AND key = $2"


@dataclass(frozen=True, slots=True)
class PriorRequest:
    operation: str
    request_hash: str
    resource_id: int | None


class IdempotencyRepository:
    def __init__(self, uow: UnitOfWork, ttl_hours: int) -> None:
        self._uow = uow
        self._ttl_hours = ttl_hours

    async def claim(
        self, subject: str, key: str, operation: str, request_hash: str
    ) -> PriorRequest | None:
        """Claim ``key`` for this request, or return the request that already holds it.

        If another transaction holds the key uncommitted, this waits for it to finish, so a
        retry racing its original sees the original's outcome.
        """
        claimed = await self._uow.fetchval(
            CLAIM, subject, key, operation, request_hash, self._ttl_hours
        )
        if claimed:
            return None
        row = await self._uow.fetchrow(LOOKUP, subject, key)
        if row is None:  # the holder rolled back between our two statements: claim again
            return await self.claim(subject, key, operation, request_hash)
        return PriorRequest(row["operation"], row["request_hash"], row["resource_id"])

    async def remember(self, subject: str, key: str, resource_id: int) -> None:
        await self._uow.execute(REMEMBER, subject, key, resource_id)
