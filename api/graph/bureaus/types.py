"""GraphQL types of bureaus and incident categories."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import strawberry
from strawberry import relay

from api.domain.models import BureauRecord, CategoryRecord
from api.graph.context import Info
from api.graph.ids import decode_id
from api.graph.prefetch import reference, resolved


@strawberry.enum
class BureauKind(StrEnum):
    CITY_BUREAU = "CITY_BUREAU"
    COMMISSION = "COMMISSION"
    STATE_ENTERPRISE = "STATE_ENTERPRISE"


@strawberry.federation.type(keys=["id"], description="A bureau of the city, or a state enterprise.")
class Bureau(relay.Node):
    id: relay.NodeID[int]
    code: str
    name_zh: str
    name_en: str
    kind: BureauKind
    joint_service_centre: bool = strawberry.field(
        description="Runs the 1999 joint service centre (sees incidents of every bureau)."
    )

    @classmethod
    def from_record(cls, record: BureauRecord) -> Bureau:
        return cls(
            id=record.id,
            code=record.code,
            name_zh=record.name_zh,
            name_en=record.name_en,
            kind=BureauKind(record.kind),
            joint_service_centre=record.joint_service_centre,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Bureau | None]:
        records = await info.context.loaders.bureaus.by_id.load_many([int(i) for i in node_ids])
        return [cls.from_record(r) if r else None for r in records]

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> Bureau | None:
        record = await info.context.loaders.bureaus.by_id.load(
            decode_id(str(representation["id"]), "Bureau", "id")
        )
        return cls.from_record(record) if record else None


@strawberry.type(
    description="A kind of problem, the bureau it is routed to, and its service level."
)
class IncidentCategory:
    code: str
    name_zh: str
    name_en: str
    sla_working_days: int | None
    sla_hours: int | None
    responsible_bureau_id: strawberry.Private[int]

    @classmethod
    def from_record(cls, record: CategoryRecord) -> IncidentCategory:
        return cls(
            code=record.code,
            name_zh=record.name_zh,
            name_en=record.name_en,
            sla_working_days=record.sla_working_days,
            sla_hours=record.sla_hours,
            responsible_bureau_id=record.responsible_bureau_id,
        )

    @strawberry.field
    def responsible_bureau(self, info: Info) -> Bureau | None:
        loader = info.context.loaders.bureaus.by_id
        return resolved(loader, self.responsible_bureau_id, Bureau.from_record)  # type: ignore[return-value]


reference(
    "IncidentCategory",
    "responsibleBureau",
    "Bureau",
    lambda x: x.bureaus.by_id,
    "responsible_bureau_id",
)
