"""GraphQL types of assets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import date
from enum import StrEnum
from typing import Any

import strawberry
from strawberry import relay

from api.domain.models import AssetRecord
from api.graph.bureaus.types import Bureau
from api.graph.context import Info
from api.graph.geo import Location
from api.graph.ids import decode_id
from api.graph.prefetch import reference, resolved
from api.policy import resources


@strawberry.enum
class AssetKind(StrEnum):
    CAMERA = "CAMERA"
    STREET_LIGHT = "STREET_LIGHT"
    ROAD_SEGMENT = "ROAD_SEGMENT"
    DRAIN = "DRAIN"
    TRAFFIC_SIGNAL = "TRAFFIC_SIGNAL"
    PUMPING_STATION = "PUMPING_STATION"
    STREET_TREE = "STREET_TREE"
    UTILITY_POLE = "UTILITY_POLE"
    HYDRANT = "HYDRANT"


@strawberry.federation.type(
    keys=["id"], authenticated=True, description="A piece of city infrastructure."
)
class Asset(relay.Node):
    id: relay.NodeID[int]
    code: str
    kind: AssetKind
    name: str
    location: Location
    installed_on: date | None
    bureau_id: strawberry.Private[int]

    @classmethod
    def from_record(cls, record: AssetRecord) -> Asset:
        return cls(
            id=record.id,
            code=record.code,
            kind=AssetKind(record.kind),
            name=record.name,
            location=Location(latitude=record.latitude, longitude=record.longitude),
            installed_on=record.installed_on,
            bureau_id=record.bureau_id,
        )

    @strawberry.field(description="The bureau that owns the asset.")
    def bureau(self, info: Info) -> Bureau | None:
        return resolved(info.context.loaders.bureaus.by_id, self.bureau_id, Bureau.from_record)  # type: ignore[return-value]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Asset | None]:
        info.context.authorize("ListAssets", resources.ASSETS)
        records = await info.context.loaders.assets.by_id.load_many([int(i) for i in node_ids])
        return [cls.from_record(r) if r else None for r in records]

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> Asset | None:
        info.context.authorize("ListAssets", resources.ASSETS)
        record = await info.context.loaders.assets.by_id.load(
            decode_id(str(representation["id"]), "Asset", "id")
        )
        return cls.from_record(record) if record else None


async def load_asset(info: Info, asset_id: int | None) -> Asset | None:
    if asset_id is None:
        return None
    info.context.authorize("ListAssets", resources.ASSETS)
    record = await info.context.loaders.assets.by_id.load(asset_id)
    return Asset.from_record(record) if record else None


reference("Asset", "bureau", "Bureau", lambda x: x.bureaus.by_id, "bureau_id")


@strawberry.type
class AssetConnection(relay.Connection[Asset]):
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many assets match the filter (one extra query).")
    async def total_count(self) -> int:
        return await self.count()
