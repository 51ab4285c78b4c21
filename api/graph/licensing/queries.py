"""Licences and licensees: a licensee reads its own company's, the city reads all."""

from __future__ import annotations

import strawberry

from api.graph.core.context import Info
from api.graph.licensing.types import Licence, Licensee, licence_of, licensee_of
from api.services.metering.licences import LicenceReads
from api.services.metering.usage import LicenseeReads


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

    @strawberry.federation.field(
        description="The licensees the caller may see, by code: a licensee's client its own "
        "company (with usage:read or inference:invoke); the city's licensing officers "
        "(licensing:admin) and staff or auditors with usage:read the whole register (at most "
        "500).",
        authenticated=True,
    )
    async def licensees(self, info: Info) -> list[Licensee]:
        return [
            licensee_of(record) for record in await LicenseeReads(info.context.access).licensees()
        ]
