"""Queries the service runs about itself and its reference data outside any request."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

ROLE_CHECK = """
SELECT r.rolsuper, r.rolbypassrls,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'lighthouse' AND c.relowner = r.oid) AS owned
FROM pg_roles r WHERE r.rolname = current_user
"""
BUREAUS = "SELECT id, code, joint_service_centre FROM lighthouse.bureau ORDER BY id"


@dataclass(frozen=True, slots=True)
class BureauReference:
    id: int
    code: str
    joint_service_centre: bool


OPERATIONS_GAUGES = "SELECT gauge, label, value FROM lighthouse.operations_gauges()"
QUALITY_GAUGES = (
    "SELECT model, model_version, prompt_version, category, outcome, detections"
    " FROM lighthouse.quality_gauges()"
)


class SystemRepository:
    def __init__(self, db: asyncpg.Connection | asyncpg.Pool) -> None:
        self._db = db

    async def role_is_privileged(self) -> bool:
        """Whether the connected role could step around row-level security."""
        row = await self._db.fetchrow(ROLE_CHECK)
        assert row is not None
        return bool(row["rolsuper"] or row["rolbypassrls"] or row["owned"])

    async def bureaus(self) -> list[BureauReference]:
        return [BureauReference(**row) for row in await self._db.fetch(BUREAUS)]

    async def operations_gauges(self) -> list[tuple[str, str, float]]:
        """(gauge, label, value) across every bureau, counts only (migration 0012)."""
        rows = await self._db.fetch(OPERATIONS_GAUGES)
        return [(row["gauge"], row["label"], float(row["value"])) for row in rows]

    async def quality_gauges(self) -> list[tuple[tuple[str, ...], float]]:
        """((model, version, prompt version, category, review outcome), detections) across
        every bureau, counts only (migration 0013)."""
        rows = await self._db.fetch(QUALITY_GAUGES)
        return [(tuple(row.values())[:5], float(row["detections"])) for row in rows]
