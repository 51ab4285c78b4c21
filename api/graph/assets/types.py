"""GraphQL types of assets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import date
from typing import Any

import strawberry
from strawberry import relay

from api.domain.models import AssetKind, AssetRecord
from api.graph.assets.loaders import AssetById
from api.graph.bureaus.loaders import BureauById
from api.graph.bureaus.types import Bureau
from api.graph.core.compiled import Column, Composite, ToOne, compiled
from api.graph.core.context import Info
from api.graph.core.geo import LOCATION_COLUMNS, Location
from api.graph.core.ids import decode_id
from api.graph.core.prefetch import related
from api.repositories.json_sql import Format

strawberry.enum(AssetKind)


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
    coverage_meters: float | None = strawberry.field(
        description="A camera's: how far it sees, in metres (null: not recorded)."
    )
    record: strawberry.Private[AssetRecord]

    @classmethod
    def from_record(cls, record: AssetRecord) -> Asset:
        return cls(
            id=record.id,
            code=record.code,
            kind=AssetKind(record.kind),
            name=record.name,
            location=Location(latitude=record.latitude, longitude=record.longitude),
            installed_on=record.installed_on,
            coverage_meters=record.coverage_meters,
            record=record,
        )

    bureau: Bureau | None = related(
        BureauById, "bureau_id", Bureau.from_record, description="The bureau that owns the asset."
    )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Asset | None]:
        records = await AssetById.of(info).load_many([int(i) for i in node_ids])
        return [cls.from_record(r) if r else None for r in records]

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> Asset | None:
        return await load_asset(info, decode_id(str(representation["id"]), "Asset", "id"))


compiled(
    Asset,
    "asset",
    id=Column("id", Format.GLOBAL_ID),
    code=Column("code"),
    kind=Column("kind"),
    name=Column("name"),
    location=Composite(LOCATION_COLUMNS),
    installed_on=Column("installed_on", Format.DATE),
    bureau=ToOne("bureau_id"),
)


async def load_asset(info: Info, asset_id: int | None) -> Asset | None:
    if asset_id is None:
        return None
    record = await AssetById.of(info).load(asset_id)
    return Asset.from_record(record) if record else None


@strawberry.type
class AssetConnection(relay.Connection[Asset]):
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many assets match the filter (one extra query).")
    async def total_count(self) -> int:
        return await self.count()
