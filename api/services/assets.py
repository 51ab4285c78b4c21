"""Assets: registering them, and what the caller may see of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from api.access.scope import AccessScope
from api.domain.errors import InvalidInput, NotFound
from api.domain.geo import Wgs84Point
from api.domain.models import AssetKind, AssetRecord
from api.policy import resources
from api.repositories.assets import AssetFilter, AssetRepository, NewAsset
from api.repositories.bureaus import BureauRepository
from api.repositories.companions import Companion
from api.repositories.idempotency import IdempotencyRepository
from api.repositories.sql import Ordering, Page, PageRequest
from api.services.idempotency import once

# A camera's coverage, at most (the database checks it too).
MAX_COVERAGE_METERS = 5000


@dataclass(frozen=True, slots=True)
class AssetRegistration:
    code: str
    kind: AssetKind
    name: str
    bureau_id: int
    location: Wgs84Point
    installed_on: date | None = None
    coverage_meters: float | None = None


class AssetReads:
    """What the caller may see of assets: the policies decide, then every row is theirs."""

    def __init__(self, access: AccessScope) -> None:
        self._access = access
        self._repository = AssetRepository(access.uow)

    def _may_list(self) -> None:
        self._access.authorize("ListAssets", resources.ASSETS)

    async def page(
        self,
        where: AssetFilter,
        ordering: Ordering,
        request: PageRequest,
        companions: Sequence[Companion[Any]] = (),
    ) -> Page[AssetRecord]:
        """A page of assets; ``companions`` (reads of what they refer to) in the same
        statement."""
        self._may_list()
        return await self._repository.page(where, ordering, request, companions)

    async def count(self, where: AssetFilter) -> int:
        self._may_list()
        return await self._repository.count(where)

    async def by_ids(self, ids: Sequence[int]) -> dict[int, AssetRecord]:
        self._may_list()
        return await self._repository.by_ids(ids)

    def by_ids_companion(self) -> Companion[AssetRecord] | None:
        """``by_ids`` as a read a page folds into its own statement; None where the caller
        may not list assets (the field then reads, and reports the refusal, itself)."""
        if not self._access.authorizer.foresee("ListAssets", resources.ASSETS):
            return None
        # Decided (and audited) as the field's own read would be: once it has keys to read.
        return self._repository.by_ids_companion().followed_by(lambda _: self._may_list())


class AssetRegistry:
    def __init__(self, access: AccessScope, key_ttl_hours: int) -> None:
        self._uow = access.uow
        self._actor = access.principal.subject
        self._authorizer = access.authorizer
        self._assets = AssetRepository(access.uow)
        self._bureaus = BureauRepository(access.uow)
        self._keys = IdempotencyRepository(access.uow, key_ttl_hours)

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
            try:
                kind = AssetKind(registration.kind)
            except ValueError:
                raise InvalidInput(
                    "kind", f"must be one of {', '.join(k.value for k in AssetKind)}"
                ) from None
            coverage = registration.coverage_meters
            if coverage is not None and kind is not AssetKind.CAMERA:
                raise InvalidInput("coverageMeters", "only a camera has a coverage")
            if coverage is not None and not 0 < coverage <= MAX_COVERAGE_METERS:
                raise InvalidInput(
                    "coverageMeters", f"must be over 0 and at most {MAX_COVERAGE_METERS} m"
                )
            owner = (await self._bureaus.by_ids([registration.bureau_id])).get(
                registration.bureau_id
            )
            if owner is None:
                raise NotFound("bureau", registration.bureau_id)
            self._authorizer.require("RegisterAsset", resources.bureau(owner.code))
            record = await self._assets.create(
                NewAsset(
                    code=code,
                    kind=kind.value,
                    name=name,
                    bureau_id=registration.bureau_id,
                    latitude=registration.location.latitude,
                    longitude=registration.location.longitude,
                    installed_on=registration.installed_on,
                    coverage_meters=registration.coverage_meters,
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
            "coverage_meters": registration.coverage_meters,
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
