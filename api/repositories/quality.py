"""Model quality counted from the review outcomes (``detection_review``, migration 0013) that
the caller may see: row-level security keeps each bureau to the detections it may see, so the
figures are those of what the caller can check.

Misses:

- a miss of the threshold: a detection under its category's threshold whose place got a
  confirmed incident of that category afterwards, within the deduplication distance and time
  the detection was recorded under; kept up in ``detection_review.missed_by`` by triggers as
  incidents move (migration 0019), so counted here with the outcomes;
- a miss of the model: a confirmed incident reported by people (not by a camera) within a
  camera's coverage, when a model version analysed that camera's frames captured within the
  deduplication time before the report and none of its answers named the category; counted on
  reading, from the incidents as they stand.
"""

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
       count(*) FILTER (WHERE outcome = 'BELOW_THRESHOLD') AS below_threshold,
       count(*) FILTER (WHERE missed_by IS NOT NULL) AS threshold_misses
FROM detection_review
WHERE {where}
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5
"""


# An incident whose finding was right (migration 0019's finding_right), written out as plain
# column tests so that the planner can count the rows it keeps.
RIGHT = (
    "({alias}.status NOT IN ('DETECTED', 'CLOSED')"
    " OR {alias}.closing_reason IN ('FIXED', 'TRANSFERRED', 'NOT_RESPONSIBLE'))"
)

# Per (incident, version): whether any of the version's answers on the camera's frames of the
# window named the incident's category.
MODEL_MISSES = f"""
WITH looked AS (
    SELECT i.id, i.category, a.model, a.model_version, a.prompt_version,
           bool_or(EXISTS (SELECT 1 FROM detection d
                           WHERE d.analysis_id = a.id AND d.category = i.category)) AS found
    FROM incident i
    JOIN asset c ON c.kind = 'CAMERA' AND c.coverage_meters IS NOT NULL
      AND earth_box(ll_to_earth(c.latitude, c.longitude), c.coverage_meters)
          @> ll_to_earth(i.latitude, i.longitude)
      AND earth_distance(ll_to_earth(c.latitude, c.longitude),
                         ll_to_earth(i.latitude, i.longitude)) <= c.coverage_meters
    JOIN frame f ON f.camera_id = c.id AND f.captured_at <= i.reported_at
      AND f.captured_at > i.reported_at - make_interval(secs => {{seconds}})
    JOIN frame_analysis a ON a.frame_sha256 = f.sha256
    WHERE i.source <> 'VLM' AND {RIGHT.format(alias="i")} AND {{where}}
    GROUP BY 1, 2, 3, 4, 5
)
SELECT model, model_version, prompt_version, category, count(*) AS missed
FROM looked WHERE NOT found
GROUP BY 1, 2, 3, 4
"""


@dataclass(frozen=True, slots=True)
class ModelMisses:
    model: str
    version: str
    prompt_version: str
    category: str
    missed: int


@dataclass(frozen=True)
class QualityFilter:
    models: Sequence[str] | None = None
    versions: Sequence[str] | None = None
    prompt_versions: Sequence[str] | None = None
    categories: Sequence[str] | None = None
    bureau_ids: Sequence[int] | None = None
    camera_ids: Sequence[int] | None = None

    def conditions(
        self,
        where: Conditions | None = None,
        *,
        analysis: str = "",
        category: str = "",
        camera: str = "",
        bureau: str = "",
    ) -> Conditions:
        """The filter's clauses, its columns qualified by the given aliases (``analysis.model``
        and so on; none: ``detection_review``'s own columns)."""
        where = where if where is not None else Conditions()
        for column, values, kind in (
            (f"{analysis}model", self.models, "text"),
            (f"{analysis}model_version", self.versions, "text"),
            (f"{analysis}prompt_version", self.prompt_versions, "text"),
            (f"{category}category", self.categories, "text"),
            (f"{bureau}bureau_id", self.bureau_ids, "int"),
            (camera or "camera_id", self.camera_ids, "bigint"),
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
    threshold_misses: int


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
                row["threshold_misses"],
            )
            for row in rows
        ]

    async def model_misses(self, where: QualityFilter, seconds: float) -> list[ModelMisses]:
        """Each version's misses of the model, per prompt and category: people's confirmed
        reports within ``seconds`` after a camera's frames the version analysed."""
        reported = Conditions([seconds])
        where.conditions(reported, analysis="a.", category="i.", camera="c.id", bureau="c.")
        text = MODEL_MISSES.format(where=reported.sql(), seconds="$1")
        return [
            ModelMisses(
                row["model"],
                row["model_version"],
                row["prompt_version"],
                row["category"],
                row["missed"],
            )
            for row in await self._uow.fetch(text, *reported.args)
        ]
