"""Per-scope DataLoaders for bureaus and categories."""

from __future__ import annotations

from collections.abc import Sequence

from strawberry.dataloader import DataLoader

from api.db.unit_of_work import UnitOfWork
from api.domain.models import BureauRecord, CategoryRecord
from api.repositories.bureaus import BureauRepository


class BureauLoaders:
    def __init__(self, uow: UnitOfWork) -> None:
        self._repository = BureauRepository(uow)
        self.by_id: DataLoader[int, BureauRecord | None] = DataLoader(load_fn=self._by_id)
        self.category: DataLoader[str, CategoryRecord | None] = DataLoader(load_fn=self._category)

    async def _by_id(self, ids: Sequence[int]) -> list[BureauRecord | None]:
        found = await self._repository.by_ids(ids)
        return [found.get(i) for i in ids]

    async def _category(self, codes: Sequence[str]) -> list[CategoryRecord | None]:
        found = await self._repository.categories_by_code(codes)
        return [found.get(code) for code in codes]
