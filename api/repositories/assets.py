"""Assets: cameras, street lights, road segments, drains… each owned by a bureau."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from api.db.errors import is_unique_violation, translate
from api.db.unit_of_work import UnitOfWork
from api.domain.errors import InvalidInput
from api.domain.geo import BoundingBox, Circle
from api.domain.models import AssetRecord, columns
from api.repositories.companions import Companion, read_page
from api.repositories.sql import Conditions, Ordering, Page, PageRequest, finish_page

ASSET_COLUMNS = columns(AssetRecord)
ASSETS_BY_ID = f"SELECT {ASSET_COLUMNS} FROM asset WHERE id = ANY($1::bigint[])"
INSERT_ASSET = f"""
INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, installed_on, created_by,
                   coverage_meters)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {ASSET_COLUMNS}
"""

BY_CODE = Ordering("CODE", ("code", "id"), descending=False, types=(str, int))
ASSET_ORDERINGS = {ordering.name: ordering for ordering in (BY_CODE,)}


@dataclass(frozen=True, slots=True)
class AssetFilter:
    kinds: Sequence[str] | None = None
    bureau_ids: Sequence[int] | None = None
    near: Circle | None = None
    within: BoundingBox | None = None

    def conditions(self, args: list[object] | None = None) -> Conditions:
        where = Conditions(args)
        if self.kinds is not None:
            where.add("kind = ANY({}::text[])", list(self.kinds))
        if self.bureau_ids is not None:
            where.add("bureau_id = ANY({}::int[])", list(self.bureau_ids))
        if self.near is not None:
            where.near(self.near)
        if self.within is not None:
            where.within(self.within)
        return where


@dataclass(frozen=True, slots=True)
class NewAsset:
    code: str
    kind: str
    name: str
    bureau_id: int
    latitude: float
    longitude: float
    installed_on: date | None
    coverage_meters: float | None = None


class AssetRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def by_ids(self, ids: Sequence[int]) -> dict[int, AssetRecord]:
        rows = await self._uow.fetch(ASSETS_BY_ID, list(ids))
        return {row["id"]: AssetRecord(**row) for row in rows}

    @staticmethod
    def by_ids_companion() -> Companion[AssetRecord]:
        return Companion(ASSETS_BY_ID, AssetRecord)

    async def page(
        self,
        where: AssetFilter,
        ordering: Ordering,
        request: PageRequest,
        companions: Sequence[Companion[Any]] = (),
    ) -> Page[AssetRecord]:
        """A page of assets; ``companions`` are read in the same statement."""
        conditions = where.conditions()
        if request.cursor is not None:
            ordering.after(conditions, request.cursor, request.backward)
        limit = conditions.param(request.limit + 1)
        order_by = ordering.order_by(request.backward)
        query = (
            f"SELECT {ASSET_COLUMNS} FROM asset WHERE {conditions.sql()}"
            f" ORDER BY {order_by} LIMIT {limit}"
        )
        rows = await read_page(self._uow, query, conditions.args, order_by, AssetRecord, companions)
        return finish_page(rows, request)

    async def count(self, where: AssetFilter) -> int:
        conditions = where.conditions()
        query = f"SELECT count(*) FROM asset WHERE {conditions.sql()}"
        return int(await self._uow.fetchval(query, *conditions.args))

    async def create(self, asset: NewAsset, actor: str) -> AssetRecord:
        try:
            row = await self._uow.fetchrow(
                INSERT_ASSET,
                asset.code,
                asset.kind,
                asset.name,
                asset.bureau_id,
                asset.latitude,
                asset.longitude,
                asset.installed_on,
                actor,
                asset.coverage_meters,
            )
        except asyncpg.PostgresError as error:
            if is_unique_violation(error, "asset_code_key"):
                raise InvalidInput("code", f"an asset with code {asset.code!r} exists") from None
            raise translate(error) or error from None
        assert row is not None
        return AssetRecord(**row)
