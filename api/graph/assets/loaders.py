"""Per-scope DataLoaders for assets."""

from __future__ import annotations

from collections.abc import Sequence

from strawberry.dataloader import DataLoader

from api.db.unit_of_work import UnitOfWork
from api.domain.models import AssetRecord
from api.repositories.assets import AssetRepository


class AssetLoaders:
    def __init__(self, uow: UnitOfWork) -> None:
        self._repository = AssetRepository(uow)
        self.by_id: DataLoader[int, AssetRecord | None] = DataLoader(load_fn=self._by_id)

    async def _by_id(self, ids: Sequence[int]) -> list[AssetRecord | None]:
        found = await self._repository.by_ids(ids)
        return [found.get(i) for i in ids]
