"""Mutations on assets."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import strawberry

from api.domain.errors import DomainError
from api.domain.models import AssetKind
from api.graph.assets.types import Asset
from api.graph.core import errors
from api.graph.core.context import Info
from api.graph.core.geo import PointInput, to_point
from api.graph.core.ids import decode_id
from api.services.assets import AssetRegistration, AssetRegistry


@strawberry.input
class CreateAssetInput:
    code: str
    kind: AssetKind
    name: str
    bureau_id: strawberry.ID
    location: PointInput
    installed_on: date | None = None
    coverage_meters: float | None = strawberry.field(
        default=None,
        description="A camera's: how far it sees, in metres (up to 5,000). Incidents people "
        "report within it count against the models that analysed its frames (modelQuality).",
    )


@strawberry.type
class AssetCreated:
    asset: Asset
    replayed: bool = strawberry.field(
        description="True when this answers a retry of an earlier request with the same key."
    )


CreateAssetResult = Annotated[
    AssetCreated
    | errors.InvalidInput
    | errors.NotFound
    | errors.IdempotencyKeyReused
    | errors.Forbidden,
    strawberry.union("CreateAssetResult"),
]


@strawberry.type
class AssetMutations:
    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["assets:write"]],
        description="Register an asset. Retries with the same key create nothing twice.",
    )
    async def create_asset(
        self, info: Info, input: CreateAssetInput, idempotency_key: str | None = None
    ) -> CreateAssetResult:
        try:
            registration = AssetRegistration(
                code=input.code,
                kind=input.kind,
                name=input.name,
                bureau_id=decode_id(input.bureau_id, "Bureau", "input.bureauId"),
                location=to_point(input.location, info, "input.location"),
                installed_on=input.installed_on,
                coverage_meters=input.coverage_meters,
            )
            registry = AssetRegistry(
                info.context.access,
                info.context.resources.settings.city.idempotency_key_ttl_hours,
            )
            record, replayed = await registry.register(registration, idempotency_key)
        except DomainError as error:
            info.context.audit.outcome = error.code
            return errors.to_graphql(error)  # type: ignore[return-value]
        return AssetCreated(asset=Asset.from_record(record), replayed=replayed)
