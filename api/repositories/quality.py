"""Model quality counted from the review outcomes (``detection_review``, migration 0013) that
the caller may see: row-level security keeps each bureau to the detections it may see, so the
figures are those of what the caller can check.

Misses are counted on reading, from the incidents as they stand (so always current):

- a miss of the threshold: a detection under its category's threshold whose place got a
  confirmed incident of that category afterwards, within the deduplication distance and time;
- a miss of the model: a confirmed incident reported by people (not by a camera) within a
  camera's coverage, when a model version analysed that camera's frames captured within the
  deduplication time before the report and none of its answers named the category.
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
       count(*) FILTER (WHERE outcome = 'BELOW_THRESHOLD') AS below_threshold
FROM detection_review
WHERE {where}
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5
"""


# An incident whose finding was right: review_outcome's CONFIRMED or TRANSFERRED, written out
# as plain column tests so that the planner can count the rows it keeps (through the function it
# guessed 1% of incidents and hash-joined every below-threshold detection to every incident of
# its category; tests/graph/models/test_quality.py holds the two to the same answers).
RIGHT = (
    "({alias}.status NOT IN ('DETECTED', 'CLOSED')"
    " OR {alias}.closing_reason IN ('FIXED', 'TRANSFERRED', 'NOT_RESPONSIBLE'))"
)

# A lateral subquery with LIMIT, not EXISTS: the planner would turn EXISTS into a hash join on
# the category alone; this way each below-threshold detection probes the incidents' spatial
# index (incident_earth_idx) for its own neighbourhood.
THRESHOLD_MISSES = f"""
SELECT r.model, r.model_version, r.prompt_version, r.category, count(*) AS missed
FROM detection_review r
JOIN detection d ON d.id = r.detection_id
CROSS JOIN LATERAL (
    SELECT 1 FROM incident i
    WHERE earth_box(ll_to_earth(d.latitude, d.longitude), {{meters}})
          @> ll_to_earth(i.latitude, i.longitude)
      AND earth_distance(ll_to_earth(d.latitude, d.longitude),
                         ll_to_earth(i.latitude, i.longitude)) <= {{meters}}
      AND i.category = r.category AND {RIGHT.format(alias="i")}
      AND i.reported_at >= r.detected_at
      AND i.reported_at < r.detected_at + make_interval(secs => {{seconds}})
    LIMIT 1) AS confirmed
WHERE r.outcome = 'BELOW_THRESHOLD' AND {{where}}
GROUP BY 1, 2, 3, 4
"""

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
class MissWindow:
    """How near and how soon a report must be to count against a detection or a camera (the
    deduplication distance and time)."""

    meters: float
    seconds: float


@dataclass(frozen=True, slots=True)
class Misses:
    model: str
    version: str
    prompt_version: str
    category: str
    threshold: int
    model_misses: int


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

    async def misses(self, where: QualityFilter, window: MissWindow) -> list[Misses]:
        """Each version's misses of the threshold and of the model, per prompt and category."""
        below = Conditions([window.meters, window.seconds])
        where.conditions(below, analysis="r.", category="r.", camera="r.camera_id", bureau="r.")
        reported = Conditions([window.seconds])
        where.conditions(reported, analysis="a.", category="i.", camera="c.id", bureau="c.")
        found: dict[tuple[str, str, str, str], list[int]] = {}
        for index, (query, conditions, extra) in enumerate(
            (
                (THRESHOLD_MISSES, below, {"meters": "$1", "seconds": "$2"}),
                (MODEL_MISSES, reported, {"seconds": "$1"}),
            )
        ):
            text = query.format(where=conditions.sql(), **extra)
            for row in await self._uow.fetch(text, *conditions.args):
                key = (row["model"], row["model_version"], row["prompt_version"], row["category"])
                found.setdefault(key, [0, 0])[index] = row["missed"]
        return [Misses(*key, *counts) for key, counts in sorted(found.items())]
