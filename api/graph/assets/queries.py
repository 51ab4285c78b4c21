"""Queries over assets."""

from __future__ import annotations

import strawberry

from api.domain.errors import InvalidInput
from api.graph.assets.types import Asset, AssetConnection, AssetKind, load_asset
from api.graph.connections import build_connection
from api.graph.context import Info
from api.graph.geo import BoundingBoxInput, NearInput, to_box, to_circle
from api.graph.ids import decode_id, decode_ids
from api.graph.prefetch import node_selections, prefetch
from api.policy import resources
from api.repositories.assets import ASSET_ORDERINGS, AssetFilter, AssetRepository
from api.repositories.sql import page_request


@strawberry.input
class AssetFilterInput:
    kind: list[AssetKind] | None = None
    bureau: list[strawberry.ID] | None = None
    near: NearInput | None = strawberry.field(default=None, description="Within a radius.")
    within: BoundingBoxInput | None = strawberry.field(default=None, description="Inside a box.")


def asset_filter(value: AssetFilterInput | None, info: Info) -> AssetFilter:
    if value is None:
        return AssetFilter()
    if value.near is not None and value.within is not None:
        raise InvalidInput("filter", "use near or within, not both")
    return AssetFilter(
        kinds=[kind.value for kind in value.kind] if value.kind is not None else None,
        bureau_ids=decode_ids(value.bureau, "Bureau", "filter.bureau"),
        near=to_circle(value.near, info, "filter.near") if value.near else None,
        within=to_box(value.within, info, "filter.within") if value.within else None,
    )


@strawberry.type
class AssetQueries:
    @strawberry.federation.field(
        description="Assets, ordered by code; filter by kind, bureau and place.",
        authenticated=True,
        requires_scopes=[["assets:read"]],
    )
    async def assets(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: AssetFilterInput | None = None,
    ) -> AssetConnection:
        info.context.authorize("ListAssets", resources.ASSETS)
        settings = info.context.resources.settings
        ordering = ASSET_ORDERINGS["CODE"]
        request = page_request(
            ordering,
            first=first,
            after=after,
            last=last,
            before=before,
            default_size=min(20, settings.max_page_size),
            max_size=settings.max_page_size,
        )
        where = asset_filter(filter, info)
        repository = AssetRepository(info.context.uow)
        page = await repository.page(where, ordering, request)
        loaders = info.context.loaders
        for record in page.items:
            loaders.assets.by_id.prime(record.id, record)
        await prefetch(loaders, "Asset", page.items, node_selections(info, "edges", "node"))
        edge_fields = {field.name for field in node_selections(info, "edges")}
        return build_connection(
            AssetConnection,
            page,
            ordering,
            Asset.from_record,
            lambda: repository.count(where),
            edge_cursors="cursor" in edge_fields,
        )

    @strawberry.federation.field(
        description="One asset by its ID; null if it does not exist.",
        authenticated=True,
        requires_scopes=[["assets:read"]],
    )
    async def asset(self, info: Info, id: strawberry.ID) -> Asset | None:
        return await load_asset(info, decode_id(id, "Asset", "id"))
