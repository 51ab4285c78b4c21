"""Category thresholds decided by the city's model officers (migration 0017), and the evidence
they are decided on: the detections people judged, over the reviews the caller may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.db.unit_of_work import UnitOfWork
from api.domain.thresholds import Judged

COLUMNS = (
    "id, category, threshold, target_precision, expected_precision, expected_recall, judged, "
    "reason, decided_by, decided_at"
)
IN_FORCE = """
SELECT DISTINCT ON (category) category, threshold FROM category_threshold ORDER BY category, id DESC
"""
DECIDE = f"""
INSERT INTO category_threshold (category, threshold, target_precision, expected_precision,
                                expected_recall, judged, reason, decided_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING {COLUMNS}
"""
HISTORY = f"SELECT {COLUMNS} FROM category_threshold ORDER BY id DESC LIMIT $1"
# A version's detections people judged right (confirmed, transferred) or wrong (rejected), in
# every bureau (a definer function: for model officers only; confidences, nothing else).
JUDGED = 'SELECT category, confidence, "right" FROM judged_confidences($1, $2, $3::text[])'


@dataclass(frozen=True, slots=True)
class ThresholdRecord:
    id: int
    category: str
    threshold: float
    target_precision: float | None
    expected_precision: float | None
    expected_recall: float | None
    judged: int | None
    reason: str
    decided_by: str
    decided_at: datetime


class CategoryThresholds:
    def __init__(self, db: UnitOfWork | asyncpg.Connection) -> None:
        self._db = db

    async def in_force(self) -> dict[str, float]:
        """The decided thresholds, by category (a category no decision names has none)."""
        return {row["category"]: row["threshold"] for row in await self._db.fetch(IN_FORCE)}

    async def history(self, limit: int) -> list[ThresholdRecord]:
        return [ThresholdRecord(**row) for row in await self._db.fetch(HISTORY, limit)]

    async def decide(
        self,
        category: str,
        threshold: float,
        target_precision: float | None,
        expected_precision: float | None,
        expected_recall: float | None,
        judged: int,
        reason: str,
        actor: str,
    ) -> ThresholdRecord:
        row = await self._db.fetchrow(
            DECIDE, category, threshold, target_precision, expected_precision, expected_recall,
            judged, reason, actor,
        )  # fmt: skip
        assert row is not None
        return ThresholdRecord(**row)

    async def judged(
        self, model: str, version: str, categories: list[str] | None
    ) -> dict[str, list[Judged]]:
        found: dict[str, list[Judged]] = {}
        for row in await self._db.fetch(JUDGED, model, version, categories):
            found.setdefault(row["category"], []).append(Judged(row["confidence"], row["right"]))
        return found
