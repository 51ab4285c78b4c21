"""GraphQL types of bureaus and incident categories."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import strawberry
from strawberry import relay

from api.domain.models import BureauKind, BureauRecord, CategoryRecord
from api.graph.bureaus.loaders import BureauById, CategoryByCode
from api.graph.core.compiled import Column, ToOne, compiled
from api.graph.core.context import Info
from api.graph.core.ids import decode_id
from api.graph.core.prefetch import related
from api.repositories.json_sql import Format

strawberry.enum(BureauKind)


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
        records = await BureauById.of(info).load_many([int(i) for i in node_ids])
        return [cls.from_record(r) if r else None for r in records]

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> Bureau | None:
        record = await BureauById.of(info).load(
            decode_id(str(representation["id"]), "Bureau", "id")
        )
        return cls.from_record(record) if record else None


compiled(
    Bureau,
    "bureau",
    id=Column("id", Format.GLOBAL_ID),
    code=Column("code"),
    name_zh=Column("name_zh"),
    name_en=Column("name_en"),
    kind=Column("kind"),
    joint_service_centre=Column("joint_service_centre"),
)


@strawberry.federation.type(
    keys=["code"],
    description="A kind of problem, the bureau it is routed to, and its service level.",
)
class IncidentCategory:
    code: str
    name_zh: str
    name_en: str
    sla_working_days: int | None
    sla_hours: int | None
    record: strawberry.Private[CategoryRecord]

    @classmethod
    def from_record(cls, record: CategoryRecord) -> IncidentCategory:
        return cls(
            code=record.code,
            name_zh=record.name_zh,
            name_en=record.name_en,
            sla_working_days=record.sla_working_days,
            sla_hours=record.sla_hours,
            record=record,
        )

    responsible_bureau: Bureau | None = related(
        BureauById, "responsible_bureau_id", Bureau.from_record
    )

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> IncidentCategory | None:
        record = await CategoryByCode.of(info).load(str(representation["code"]))
        return cls.from_record(record) if record else None


compiled(
    IncidentCategory,
    "incident_category",
    code=Column("code"),
    name_zh=Column("name_zh"),
    name_en=Column("name_en"),
    sla_working_days=Column("sla_working_days"),
    sla_hours=Column("sla_hours"),
    responsible_bureau=ToOne("responsible_bureau_id"),
)
