"""Model quality counted from the review outcomes (``detection_review``, migration 0013) that
the caller may see: row-level security keeps each bureau to the detections it may see, so the
figures are those of what the caller can check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from api.db.unit_of_work import UnitOfWork
from api.domain.quality import OutcomeCounts
from api.repositories.sql import Conditions

# One row per version, prompt, category and confidence tenth; the service rolls the tenths up.
QUALITY = """
SELECT model, model_version, prompt_version, category,
       least(floor(confidence * 10)::int, 9) AS bin,
       count(*) FILTER (WHERE outcome = 'CONFIRMED') AS confirmed,
       count(*) FILTER (WHERE outcome = 'REJECTED') AS rejected,
       count(*) FILTER (WHERE outcome = 'DUPLICATE') AS duplicates,
       count(*) FILTER (WHERE outcome = 'TRANSFERRED') AS transferred,
       count(*) FILTER (WHERE outcome = 'PENDING') AS pending,
       count(*) FILTER (WHERE outcome = 'BELOW_THRESHOLD') AS below_threshold
FROM detection_review
WHERE {where}
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5
"""


@dataclass(frozen=True)
class QualityFilter:
    models: Sequence[str] | None = None
    versions: Sequence[str] | None = None
    prompt_versions: Sequence[str] | None = None
    categories: Sequence[str] | None = None
    bureau_ids: Sequence[int] | None = None
    camera_ids: Sequence[int] | None = None

    def conditions(self) -> Conditions:
        where = Conditions()
        for column, values, kind in (
            ("model", self.models, "text"),
            ("model_version", self.versions, "text"),
            ("prompt_version", self.prompt_versions, "text"),
            ("category", self.categories, "text"),
            ("bureau_id", self.bureau_ids, "int"),
            ("camera_id", self.camera_ids, "bigint"),
        ):
            if values is not None:
                where.add(f"{column} = ANY({{}}::{kind}[])", list(values))
        return where


@dataclass(frozen=True, slots=True)
class QualityCell:
    """The outcomes of one version's detections of one category, with one prompt, whose
    confidence fell in one tenth (``bin`` 0 to 9)."""

    model: str
    version: str
    prompt_version: str
    category: str
    bin: int
    counts: OutcomeCounts


class QualityRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def cells(self, where: QualityFilter) -> list[QualityCell]:
        conditions = where.conditions()
        rows = await self._uow.fetch(QUALITY.format(where=conditions.sql()), *conditions.args)
        return [
            QualityCell(
                row["model"],
                row["model_version"],
                row["prompt_version"],
                row["category"],
                row["bin"],
                OutcomeCounts(
                    row["confirmed"],
                    row["rejected"],
                    row["duplicates"],
                    row["transferred"],
                    row["pending"],
                    row["below_threshold"],
                ),
            )
            for row in rows
        ]
