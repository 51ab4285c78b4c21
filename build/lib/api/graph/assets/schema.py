"""The assets domain's part of the graph."""

from __future__ import annotations

from api.graph.assets.loaders import AssetById
from api.graph.assets.mutations import AssetMutations
from api.graph.assets.queries import AssetQueries
from api.graph.assets.types import Asset
from api.graph.core.bundle import DomainBundle

bundle = DomainBundle(
    name="assets", query=AssetQueries, mutation=AssetMutations, types=(Asset,), loaders=(AssetById,)
)
