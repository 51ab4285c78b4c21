"""Mutations on assets."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import strawberry

from api.domain.errors import DomainError
from api.graph import errors
from api.graph.assets.types import Asset, AssetKind
from api.graph.context import Info
from api.graph.geo import PointInput, to_point
from api.graph.ids import decode_id
from api.services.assets import AssetRegistration, AssetRegistry


@strawberry.input
class CreateAssetInput:
    code: str
    kind: AssetKind
    name: str
    bureau_id: strawberry.ID
    location: PointInput
    installed_on: date | None = None


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
                kind=input.kind.value,
                name=input.name,
                bureau_id=decode_id(input.bureau_id, "Bureau", "input.bureauId"),
                location=to_point(input.location, info, "input.location"),
                installed_on=input.installed_on,
            )
            registry = AssetRegistry(
                info.context.uow,
                info.context.principal,
                info.context.resources.settings.idempotency_key_ttl_hours,
                info.context.authorizer,
            )
            record, replayed = await registry.register(registration, idempotency_key)
        except DomainError as error:
            return errors.to_graphql(error)  # type: ignore[return-value]
        return AssetCreated(asset=Asset.from_record(record), replayed=replayed)
