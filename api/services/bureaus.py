"""Bureaus and the category routing table: reference data anyone may read."""

from __future__ import annotations

from collections.abc import Sequence

from api.access.scope import AccessScope
from api.domain.models import BureauRecord, CategoryRecord
from api.repositories.bureaus import BureauRepository
from api.repositories.companions import Companion


class BureauReads:
    def __init__(self, access: AccessScope) -> None:
        self._repository = BureauRepository(access.uow)

    async def all(self) -> list[BureauRecord]:
        return await self._repository.all()

    async def by_ids(self, ids: Sequence[int]) -> dict[int, BureauRecord]:
        return await self._repository.by_ids(ids)

    def by_ids_companion(self) -> Companion[BureauRecord]:
        """``by_ids`` as a read a page folds into its own statement."""
        return self._repository.by_ids_companion()

    def categories_by_code_companion(self) -> Companion[CategoryRecord]:
        return self._repository.categories_by_code_companion()

    async def by_codes(self, codes: Sequence[str]) -> dict[str, BureauRecord]:
        return await self._repository.by_codes(codes)

    async def categories(self) -> list[CategoryRecord]:
        return await self._repository.categories()

    async def categories_by_code(self, codes: Sequence[str]) -> dict[str, CategoryRecord]:
        return await self._repository.categories_by_code(codes)
