"""Registering assets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from api.auth.principal import Principal
from api.db.unit_of_work import UnitOfWork
from api.domain.errors import InvalidInput, NotFound
from api.domain.geo import Wgs84Point
from api.domain.models import AssetRecord
from api.policy import resources
from api.policy.authorizer import Authorizer
from api.repositories.assets import AssetRepository, NewAsset
from api.repositories.bureaus import BureauRepository
from api.repositories.idempotency import IdempotencyRepository
from api.services.idempotency import once

ASSET_KINDS = (
    "CAMERA",
    "STREET_LIGHT",
    "ROAD_SEGMENT",
    "DRAIN",
    "TRAFFIC_SIGNAL",
    "PUMPING_STATION",
    "STREET_TREE",
    "UTILITY_POLE",
    "HYDRANT",
)


@dataclass(frozen=True, slots=True)
class AssetRegistration:
    code: str
    kind: str
    name: str
    bureau_id: int
    location: Wgs84Point
    installed_on: date | None = None


class AssetRegistry:
    def __init__(
        self, uow: UnitOfWork, principal: Principal, key_ttl_hours: int, authorizer: Authorizer
    ) -> None:
        self._uow = uow
        self._actor = principal.subject
        self._authorizer = authorizer
        self._assets = AssetRepository(uow)
        self._bureaus = BureauRepository(uow)
        self._keys = IdempotencyRepository(uow, key_ttl_hours)

    async def register(
        self, registration: AssetRegistration, idempotency_key: str | None
    ) -> tuple[AssetRecord, bool]:
        async def create() -> tuple[AssetRecord, int]:
            code = registration.code.strip()
            name = registration.name.strip()
            if not 1 <= len(code) <= 64:
                raise InvalidInput("code", "must be 1 to 64 characters")
            if not 1 <= len(name) <= 200:
                raise InvalidInput("name", "must be 1 to 200 characters")
            if registration.kind not in ASSET_KINDS:
                raise InvalidInput("kind", f"must be one of {', '.join(ASSET_KINDS)}")
            owner = (await self._bureaus.by_ids([registration.bureau_id])).get(
                registration.bureau_id
            )
            if owner is None:
                raise NotFound("bureau", registration.bureau_id)
            self._authorizer.require("RegisterAsset", resources.bureau(owner.code))
            record = await self._assets.create(
                NewAsset(
                    code=code,
                    kind=registration.kind,
                    name=name,
                    bureau_id=registration.bureau_id,
                    latitude=registration.location.latitude,
                    longitude=registration.location.longitude,
                    installed_on=registration.installed_on,
                ),
                self._actor,
            )
            return record, record.id

        async def replay(asset_id: int) -> AssetRecord:
            return (await self._assets.by_ids([asset_id]))[asset_id]

        payload = {
            "code": registration.code,
            "kind": registration.kind,
            "name": registration.name,
            "bureau": registration.bureau_id,
            "location": [registration.location.latitude, registration.location.longitude],
            "installed_on": registration.installed_on.isoformat()
            if registration.installed_on
            else None,
        }
        async with self._uow.savepoint():
            return await once(
                self._keys,
                subject=self._actor,
                key=idempotency_key,
                operation="createAsset",
                payload=payload,
                create=create,
                replay=replay,
            )
