"""Queries over assets."""

from __future__ import annotations

from typing import cast

import strawberry

from api.domain.errors import InvalidInput
from api.domain.models import AssetKind
from api.graph.assets.loaders import AssetById
from api.graph.assets.types import Asset, AssetConnection, load_asset
from api.graph.core.compiled import SQL, NotCompiled, RootById, RootConnection
from api.graph.core.connections import build_connection
from api.graph.core.context import Info
from api.graph.core.geo import BoundingBoxInput, NearInput, to_box, to_circle
from api.graph.core.ids import decode_id, decode_ids
from api.graph.core.prefetch import PagePrefetch, node_selections
from api.policy import resources
from api.repositories.assets import ASSET_ORDERINGS, AssetFilter
from api.repositories.sql import page_request
from api.services.assets import AssetReads


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


def _compiled_filter(value: AssetFilterInput) -> AssetFilter:
    """A filter as the resolvers read it; ``near``/``within`` (a coordinate conversion) stay on
    the resolvers."""
    if value.near is not None or value.within is not None:
        raise NotCompiled("filter.near and within are not compiled")
    return asset_filter(value, cast(Info, None))  # info serves near/within only


# ``assets(first, after, filter) { … }`` and ``asset(id)`` in a registered document compile to
# one statement (see api.graph.core.compiled). The resolvers note no asset in the audit record
# (assets are not personal and are listed whole), so neither does the statement.
ASSETS_SQL = RootConnection(
    orderings=ASSET_ORDERINGS,
    default_order="CODE",
    listed=("ListAssets", resources.ASSETS),
    audited=None,
    page_size=lambda graph: (min(20, graph.max_page_size), graph.max_page_size),
    filter=_compiled_filter,
)
ASSET_SQL = RootById(
    type_name="Asset", listed=("ListAssets", resources.ASSETS), audited=None, decode=decode_id
)


@strawberry.type
class AssetQueries:
    @strawberry.federation.field(
        description="Assets, ordered by code; filter by kind, bureau and place.",
        authenticated=True,
        requires_scopes=[["assets:read"]],
        metadata={SQL: ASSETS_SQL},
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
        settings = info.context.resources.settings
        ordering = ASSET_ORDERINGS["CODE"]
        request = page_request(
            ordering,
            first=first,
            after=after,
            last=last,
            before=before,
            default_size=min(20, settings.graph.max_page_size),
            max_size=settings.graph.max_page_size,
        )
        where = asset_filter(filter, info)
        reads = AssetReads(info.context.access)
        # The nested fields' reads that can go with the page go in its statement.
        nested = PagePrefetch(info, "Asset", "edges", "node")
        page = await reads.page(where, ordering, request, nested.companions)
        AssetById.of(info).prime_many({record.id: record for record in page.items})
        await nested.finish(page.items)
        edge_fields = {field.name for field in node_selections(info, "edges")}
        return build_connection(
            AssetConnection,
            page,
            ordering,
            Asset.from_record,
            lambda: reads.count(where),
            edge_cursors="cursor" in edge_fields,
        )

    @strawberry.federation.field(
        description="One asset by its ID; null if it does not exist.",
        authenticated=True,
        requires_scopes=[["assets:read"]],
        metadata={SQL: ASSET_SQL},
    )
    async def asset(self, info: Info, id: strawberry.ID) -> Asset | None:
        return await load_asset(info, decode_id(id, "Asset", "id"))
