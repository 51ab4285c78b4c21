"""Per-scope DataLoaders for bureaus and categories."""

from __future__ import annotations

from collections.abc import Sequence

from api.domain.models import BureauRecord, CategoryRecord
from api.graph.core.loaders import Folded, ScopedLoader, one_each
from api.services.bureaus import BureauReads


class BureauById(ScopedLoader[int, BureauRecord | None]):
    async def load_batch(self, keys: Sequence[int]) -> list[BureauRecord | None]:
        found = await BureauReads(self.access).by_ids(keys)
        return [found.get(key) for key in keys]

    def folded(self) -> Folded:
        return one_each(BureauReads(self.access).by_ids_companion(), "id")


class CategoryByCode(ScopedLoader[str, CategoryRecord | None]):
    async def load_batch(self, keys: Sequence[str]) -> list[CategoryRecord | None]:
        found = await BureauReads(self.access).categories_by_code(keys)
        return [found.get(key) for key in keys]

    def folded(self) -> Folded:
        return one_each(BureauReads(self.access).categories_by_code_companion(), "code")
