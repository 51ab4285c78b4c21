"""Licences: a licensee reads its own company's, the city reads all."""

from __future__ import annotations

import strawberry

from api.graph.core.context import Info
from api.graph.licensing.types import Licence, licence_of
from api.services.metering.licences import LicenceReads


@strawberry.type
class LicensingQueries:
    @strawberry.federation.field(
        description="The licences the caller may see: a licensee's client its own company's "
        "(with usage:read or inference:invoke); the city's licensing officers (licensing:admin) "
        "and staff or auditors with usage:read all of them. With this period's use and what "
        "remains.",
        authenticated=True,
    )
    async def licences(self, info: Info) -> list[Licence]:
        context = info.context
        reads = LicenceReads(context.access, context.resources.settings.city.timezone)
        return [licence_of(view) for view in await reads.licences()]
