"""The city's licensing officers suspend, resume and revoke licences (licensing:admin)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from api.domain.errors import DomainError
from api.graph.core import errors
from api.graph.core.context import Info
from api.graph.core.ids import decode_id
from api.graph.licensing.office import LicensingOfficeMutations
from api.graph.licensing.types import Licence, licence_of
from api.services.metering.licences import LicenceAdmin, LicenceView

LicenceChangeResult = Annotated[
    Licence | errors.NotFound | errors.InvalidInput | errors.Forbidden,
    strawberry.union("LicenceChangeResult"),
]


async def _change(
    info: Info, licence: strawberry.ID, change: str, reason: str = ""
) -> LicenceChangeResult:
    context = info.context
    try:
        key = decode_id(licence, "Licence", "licence")
        admin = LicenceAdmin(context.access)
        if change == "suspend":
            record = await admin.suspend(key, reason)
        elif change == "resume":
            record = await admin.resume(key)
        else:
            record = await admin.revoke(key)
    except DomainError as error:
        context.audit.outcome = error.code
        return errors.to_graphql(error)  # type: ignore[return-value]
    return licence_of(LicenceView(record, None))


@strawberry.type
class LicensingMutations(LicensingOfficeMutations):
    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["licensing:admin"]],
        description="Suspend a licence: its clients' calls are refused until it is resumed.",
    )
    async def suspend_licence(
        self, info: Info, licence: strawberry.ID, reason: str
    ) -> LicenceChangeResult:
        return await _change(info, licence, "suspend", reason)

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["licensing:admin"]],
        description="Lift a licence's suspension.",
    )
    async def resume_licence(self, info: Info, licence: strawberry.ID) -> LicenceChangeResult:
        return await _change(info, licence, "resume")

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["licensing:admin"]],
        description="Revoke a licence for good.",
    )
    async def revoke_licence(self, info: Info, licence: strawberry.ID) -> LicenceChangeResult:
        return await _change(info, licence, "revoke")
