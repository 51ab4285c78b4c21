"""Bureaus and the category routing table (reference data, written only by migrations)."""

from __future__ import annotations

from collections.abc import Sequence

from api.db.unit_of_work import UnitOfWork
from api.domain.models import BureauRecord, CategoryRecord, columns
from api.repositories.companions import Companion

BUREAU_COLUMNS = columns(BureauRecord)
CATEGORY_COLUMNS = columns(CategoryRecord)

ALL_BUREAUS = f"SELECT {BUREAU_COLUMNS} FROM bureau ORDER BY id"
BUREAUS_BY_ID = f"SELECT {BUREAU_COLUMNS} FROM bureau WHERE id = ANY($1::int[])"
BUREAUS_BY_CODE = f"SELECT {BUREAU_COLUMNS} FROM bureau WHERE code = ANY($1::text[])"
ALL_CATEGORIES = f"SELECT {CATEGORY_COLUMNS} FROM incident_category ORDER BY code"
CATEGORIES_BY_CODE = (
    f"SELECT {CATEGORY_COLUMNS} FROM incident_category WHERE code = ANY($1::text[])"
)


class BureauRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def all(self) -> list[BureauRecord]:
        return [BureauRecord(**row) for row in await self._uow.fetch(ALL_BUREAUS)]

    async def by_ids(self, ids: Sequence[int]) -> dict[int, BureauRecord]:
        rows = await self._uow.fetch(BUREAUS_BY_ID, list(ids))
        return {row["id"]: BureauRecord(**row) for row in rows}

    @staticmethod
    def by_ids_companion() -> Companion[BureauRecord]:
        return Companion(BUREAUS_BY_ID, BureauRecord)

    @staticmethod
    def categories_by_code_companion() -> Companion[CategoryRecord]:
        return Companion(CATEGORIES_BY_CODE, CategoryRecord)

    async def by_codes(self, codes: Sequence[str]) -> dict[str, BureauRecord]:
        rows = await self._uow.fetch(BUREAUS_BY_CODE, list(codes))
        return {row["code"]: BureauRecord(**row) for row in rows}

    async def categories(self) -> list[CategoryRecord]:
        return [CategoryRecord(**row) for row in await self._uow.fetch(ALL_CATEGORIES)]

    async def categories_by_code(self, codes: Sequence[str]) -> dict[str, CategoryRecord]:
        rows = await self._uow.fetch(CATEGORIES_BY_CODE, list(codes))
        return {row["code"]: CategoryRecord(**row) for row in rows}
