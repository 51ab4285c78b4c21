"""Trusted documents (migration 0008): registered once, read by id or by their text's SHA-256."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.db.errors import translate
from api.db.unit_of_work import UnitOfWork

COLUMNS = "id, sha256, client, document, operation_names, registered_by, registered_at"
BY_IDS = f"SELECT {COLUMNS} FROM trusted_document WHERE id = ANY($1::text[])"
BY_SHA256 = f"SELECT {COLUMNS} FROM trusted_document WHERE sha256 = $1 LIMIT 1"
OF_CLIENT = f"""
SELECT {COLUMNS} FROM trusted_document WHERE ($1::text IS NULL OR client = $1)
ORDER BY registered_at DESC, id LIMIT $2
"""
# Registered as given; an id already registered is left as it is (the caller compares texts).
REGISTER = """
INSERT INTO trusted_document (id, sha256, client, document, operation_names, registered_by)
SELECT d.id, d.sha256, d.client, d.document, string_to_array(d.names, ','), d.registered_by
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
    AS d(id, sha256, client, document, names, registered_by)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""


@dataclass(frozen=True, slots=True)
class TrustedDocument:
    id: str
    sha256: str
    client: str
    document: str
    operation_names: list[str]
    registered_by: str
    registered_at: datetime | None = None


class TrustedDocuments:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def by_ids(self, ids: Sequence[str]) -> dict[str, TrustedDocument]:
        rows = await self._uow.fetch(BY_IDS, list(ids))
        return {row["id"]: TrustedDocument(**row) for row in rows}

    async def by_sha256(self, sha256: str) -> TrustedDocument | None:
        row = await self._uow.fetchrow(BY_SHA256, sha256)
        return TrustedDocument(**row) if row is not None else None

    async def of_client(self, client: str | None, limit: int) -> list[TrustedDocument]:
        return [TrustedDocument(**row) for row in await self._uow.fetch(OF_CLIENT, client, limit)]

    async def register(self, documents: Sequence[TrustedDocument]) -> set[str]:
        """Register ``documents``; the ids that were new (the others were registered before)."""
        if not documents:
            return set()
        try:
            rows = await self._uow.fetch(
                REGISTER,
                [d.id for d in documents],
                [d.sha256 for d in documents],
                [d.client for d in documents],
                [d.document for d in documents],
                # One text per document: the names travel comma-joined (a name has no comma).
                [",".join(d.operation_names) for d in documents],
                [d.registered_by for d in documents],
            )
        except asyncpg.PostgresError as error:
            translated = translate(error)
            if translated is None:
                raise
            raise translated from None
        return {row["id"] for row in rows}
