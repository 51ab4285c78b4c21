"""The model registry's decisions (migrations 0014, 0015): which model version the vision workers
use, decided by the city's model officers, append-only. The newest production decision is in
force; the newest trial (a candidate in shadow or as a canary) decided after it is too, until a
decision ends it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.db.unit_of_work import UnitOfWork

PRODUCTION = "PRODUCTION"
SHADOW = "SHADOW"
CANARY = "CANARY"
TRIAL_ENDED = "TRIAL_ENDED"

DECISION_COLUMNS = (
    "id, model, version, role, reason, decided_by, decided_at, share, rejected_bound, "
    "min_reviewed, ends"
)
DECIDE = f"""
INSERT INTO model_decision (model, version, role, reason, decided_by, share, rejected_bound,
                            min_reviewed, ends)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {DECISION_COLUMNS}
"""
# A trial's end made twice (two workers ending one failing canary) is made once.
END_ONCE = f"""
INSERT INTO model_decision (model, version, role, reason, decided_by, ends)
VALUES ($1, $2, 'TRIAL_ENDED', $3, $4, $5)
ON CONFLICT (ends) DO NOTHING
RETURNING {DECISION_COLUMNS}
"""
PRODUCTION_IN_FORCE = f"""
SELECT {DECISION_COLUMNS} FROM model_decision WHERE role = 'PRODUCTION' ORDER BY id DESC LIMIT 1
"""
# Production's decision and the trial's, in one statement (read with each frame): the trial is
# the newest made after production's, unless a decision ended it.
IN_FORCE = f"""
WITH production AS ({PRODUCTION_IN_FORCE}),
trial AS (
    SELECT {DECISION_COLUMNS} FROM model_decision
    WHERE role IN ('SHADOW', 'CANARY') AND id > coalesce((SELECT id FROM production), 0)
    ORDER BY id DESC LIMIT 1
)
SELECT * FROM production
UNION ALL
SELECT * FROM trial t WHERE NOT EXISTS (SELECT 1 FROM model_decision e WHERE e.ends = t.id)
"""
NEWEST_FIRST = f"SELECT {DECISION_COLUMNS} FROM model_decision ORDER BY id DESC LIMIT $1"
CANARY_HEALTH = "SELECT confirmed, rejected FROM canary_health($1)"
BY_ID = f"SELECT {DECISION_COLUMNS} FROM model_decision WHERE id = $1"
PRODUCTION_BEFORE = f"""
SELECT {DECISION_COLUMNS} FROM model_decision WHERE role = 'PRODUCTION' AND id < $1
ORDER BY id DESC LIMIT 1
"""
# A trial ends with the decision that ends it, a promotion, or the next trial.
ENDED_AT = """
SELECT min(decided_at) FROM model_decision
WHERE id > $1 AND (ends = $1 OR role IN ('PRODUCTION', 'SHADOW', 'CANARY'))
"""


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    id: int
    model: str
    version: str
    role: str
    reason: str
    decided_by: str
    decided_at: datetime
    share: float | None = None  # SHADOW, CANARY: the share of frames the candidate analyses
    rejected_bound: float | None = None  # CANARY: ended past this rejected share ...
    min_reviewed: int | None = None  # ... once at least this many were reviewed
    ends: int | None = None  # TRIAL_ENDED: the trial it ended


@dataclass(frozen=True, slots=True)
class InForce:
    """What the vision workers follow: production's decision (None: the configured model) and
    the trial beside it (None: no candidate is being tried)."""

    production: DecisionRecord | None
    trial: DecisionRecord | None


@dataclass(frozen=True, slots=True)
class CanaryHealth:
    confirmed: int
    rejected: int

    @property
    def reviewed(self) -> int:
        return self.confirmed + self.rejected

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.reviewed if self.reviewed else 0.0


class ModelDecisions:
    def __init__(self, db: UnitOfWork | asyncpg.Connection) -> None:
        self._db = db

    async def decide(
        self,
        model: str,
        version: str,
        role: str,
        reason: str,
        actor: str,
        *,
        share: float | None = None,
        rejected_bound: float | None = None,
        min_reviewed: int | None = None,
        ends: int | None = None,
    ) -> DecisionRecord:
        row = await self._db.fetchrow(
            DECIDE, model, version, role, reason, actor, share, rejected_bound, min_reviewed, ends
        )
        assert row is not None
        return DecisionRecord(**row)

    async def end_trial(self, trial: DecisionRecord, reason: str, actor: str) -> DecisionRecord:
        """End ``trial``; the decision that ended it first if another did (concurrently)."""
        row = await self._db.fetchrow(END_ONCE, trial.model, trial.version, reason, actor, trial.id)
        if row is None:
            row = await self._db.fetchrow(
                f"SELECT {DECISION_COLUMNS} FROM model_decision WHERE ends = $1", trial.id
            )
        assert row is not None
        return DecisionRecord(**row)

    async def production(self) -> DecisionRecord | None:
        row = await self._db.fetchrow(PRODUCTION_IN_FORCE)
        return DecisionRecord(**row) if row is not None else None

    async def in_force(self) -> InForce:
        rows = [DecisionRecord(**row) for row in await self._db.fetch(IN_FORCE)]
        production = next((r for r in rows if r.role == PRODUCTION), None)
        trial = next((r for r in rows if r.role != PRODUCTION), None)
        return InForce(production, trial)

    async def canary_health(self, decision_id: int) -> CanaryHealth:
        row = await self._db.fetchrow(CANARY_HEALTH, decision_id)
        assert row is not None
        return CanaryHealth(row["confirmed"], row["rejected"])

    async def by_id(self, decision_id: int) -> DecisionRecord | None:
        row = await self._db.fetchrow(BY_ID, decision_id)
        return DecisionRecord(**row) if row is not None else None

    async def production_before(self, decision_id: int) -> DecisionRecord | None:
        row = await self._db.fetchrow(PRODUCTION_BEFORE, decision_id)
        return DecisionRecord(**row) if row is not None else None

    async def ended_at(self, trial: DecisionRecord) -> datetime | None:
        ended: datetime | None = await self._db.fetchval(ENDED_AT, trial.id)
        return ended

    async def newest(self, limit: int) -> list[DecisionRecord]:
        return [DecisionRecord(**row) for row in await self._db.fetch(NEWEST_FIRST, limit)]
