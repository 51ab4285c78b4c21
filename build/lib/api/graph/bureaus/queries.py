"""Queries over bureaus and categories."""

from __future__ import annotations

import strawberry

from api.graph.bureaus.types import Bureau, IncidentCategory
from api.graph.core.context import Info
from api.services.bureaus import BureauReads


@strawberry.type
class BureauQueries:
    @strawberry.field(description="Every bureau and state enterprise, in a stable order.")
    async def bureaus(self, info: Info) -> list[Bureau]:
        records = await BureauReads(info.context.access).all()
        return [Bureau.from_record(r) for r in records]

    @strawberry.field(description="A bureau by its code, e.g. PUBLIC_WORKS.")
    async def bureau(self, info: Info, code: str) -> Bureau | None:
        record = (await BureauReads(info.context.access).by_codes([code])).get(code)
        return Bureau.from_record(record) if record else None

    @strawberry.field(description="The routing table: categories, responsible bureaus, SLAs.")
    async def categories(self, info: Info) -> list[IncidentCategory]:
        records = await BureauReads(info.context.access).categories()
        return [IncidentCategory.from_record(r) for r in records]
