"""The model registry's decisions (migration 0014): which model version the vision workers use,
decided by the city's model officers, append-only; the newest production decision is in force."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.db.unit_of_work import UnitOfWork

DECISION_COLUMNS = "id, model, version, role, reason, decided_by, decided_at"
DECIDE = f"""
INSERT INTO model_decision (model, version, role, reason, decided_by)
VALUES ($1, $2, $3, $4, $5)
RETURNING {DECISION_COLUMNS}
"""
IN_FORCE = f"""
SELECT {DECISION_COLUMNS} FROM model_decision WHERE role = $1 ORDER BY id DESC LIMIT 1
"""
NEWEST_FIRST = f"SELECT {DECISION_COLUMNS} FROM model_decision ORDER BY id DESC LIMIT $1"


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    id: int
    model: str
    version: str
    role: str
    reason: str
    decided_by: str
    decided_at: datetime


class ModelDecisions:
    def __init__(self, db: UnitOfWork | asyncpg.Connection) -> None:
        self._db = db

    async def decide(
        self, model: str, version: str, role: str, reason: str, actor: str
    ) -> DecisionRecord:
        row = await self._db.fetchrow(DECIDE, model, version, role, reason, actor)
        assert row is not None
        return DecisionRecord(**row)

    async def in_force(self, role: str = "PRODUCTION") -> DecisionRecord | None:
        row = await self._db.fetchrow(IN_FORCE, role)
        return DecisionRecord(**row) if row is not None else None

    async def newest(self, limit: int) -> list[DecisionRecord]:
        return [DecisionRecord(**row) for row in await self._db.fetch(NEWEST_FIRST, limit)]
