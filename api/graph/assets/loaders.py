"""Per-scope DataLoaders for assets."""

from __future__ import annotations

from collections.abc import Sequence

from api.domain.models import AssetRecord
from api.graph.core.loaders import Folded, ScopedLoader, one_each
from api.services.assets import AssetReads


class AssetById(ScopedLoader[int, AssetRecord | None]):
    async def load_batch(self, keys: Sequence[int]) -> list[AssetRecord | None]:
        found = await AssetReads(self.access).by_ids(keys)
        return [found.get(key) for key in keys]

    def folded(self) -> Folded | None:
        companion = AssetReads(self.access).by_ids_companion()
        return one_each(companion, "id") if companion is not None else None
