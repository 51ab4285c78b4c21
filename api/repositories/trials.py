"""A trial's comparison (migration 0015): the candidate against the production version, over the
trial's time and the frames and detections the caller may see (row-level security).

- In SHADOW both versions analysed the same frames: per category, the frames where both named
  it, only production (acting on it), only the candidate (at or above the category's
  threshold); production's detections counted by what people did with them, and the
  candidate's judged by the same outcomes where it named what production did (what only the
  candidate saw was never put before people: it is counted apart, unjudged).
- As a CANARY each version analysed its own frames, for real: each version's detections of the
  trial's time counted by review outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from api.db.unit_of_work import UnitOfWork
from api.domain.quality import OutcomeCounts

OUTCOME_FIELDS = {
    "CONFIRMED": "confirmed",
    "REJECTED": "rejected",
    "DUPLICATE": "duplicates",
    "TRANSFERRED": "transferred",
    "PENDING": "pending",
    "BELOW_THRESHOLD": "below_threshold",
}

# The frames both versions answered usably, shadow analysis beside production's.
PAIRS = """
SELECT c.id AS candidate, p.id AS production
FROM frame_analysis c
JOIN frame_analysis p ON p.frame_sha256 = c.frame_sha256 AND p.prompt_version = c.prompt_version
     AND p.model = $3 AND p.model_version = $4 AND p.role <> 'SHADOW'
WHERE c.model = $1 AND c.model_version = $2 AND c.role = 'SHADOW'
  AND c.analysed_at >= $5 AND c.analysed_at < coalesce($6::timestamptz, 'infinity')
  AND c.outcome <> 'UNUSABLE' AND p.outcome <> 'UNUSABLE'
"""
SHADOW_FRAMES = f"SELECT count(*) FROM ({PAIRS}) AS pairs"
SHADOW = f"""
WITH pairs AS ({PAIRS}),
said AS (
    SELECT pr.candidate AS frame, d.category, r.outcome, true AS production, false AS candidate
    FROM pairs pr
    JOIN detection d ON d.analysis_id = pr.production AND d.outcome IN ('OPENED', 'ATTACHED')
    JOIN detection_review r ON r.detection_id = d.id
    UNION ALL
    SELECT pr.candidate, d.category, NULL, false, true
    FROM pairs pr
    JOIN detection d ON d.analysis_id = pr.candidate
    LEFT JOIN unnest($7::text[], $8::float8[]) AS t(category, threshold)
           ON t.category = d.category
    WHERE d.confidence >= coalesce(t.threshold, $9)
),
per_frame AS (
    SELECT frame, category, bool_or(production) AS p, bool_or(candidate) AS c,
           max(outcome) AS outcome
    FROM said GROUP BY 1, 2
)
SELECT category, p, c, outcome, count(*) AS n FROM per_frame GROUP BY 1, 2, 3, 4
"""
# Each version's analyses and detections of the trial's time (the canary's frames and
# production's others).
CANARY_FRAMES = """
SELECT model = $1 AND model_version = $2 AS candidate, count(*) AS n
FROM frame_analysis
WHERE ((model = $1 AND model_version = $2) OR (model = $3 AND model_version = $4))
  AND role <> 'SHADOW' AND analysed_at >= $5
  AND analysed_at < coalesce($6::timestamptz, 'infinity')
GROUP BY 1
"""
CANARY = """
SELECT model = $1 AND model_version = $2 AS candidate, category, outcome, count(*) AS n
FROM detection_review
WHERE ((model = $1 AND model_version = $2) OR (model = $3 AND model_version = $4))
  AND detected_at >= $5 AND detected_at < coalesce($6::timestamptz, 'infinity')
GROUP BY 1, 2, 3
"""


@dataclass(slots=True)
class CategoryComparison:
    category: str
    production: OutcomeCounts = field(default_factory=OutcomeCounts)
    candidate: OutcomeCounts = field(default_factory=OutcomeCounts)
    # SHADOW only: frames where both named the category, only production, only the candidate.
    both: int | None = None
    production_only: int | None = None
    candidate_only: int | None = None

    @property
    def agreement(self) -> float | None:
        """Frames where both named the category among those where either did (SHADOW)."""
        if self.both is None or self.production_only is None or self.candidate_only is None:
            return None
        either = self.both + self.production_only + self.candidate_only
        return self.both / either if either else None


@dataclass(frozen=True, slots=True)
class Comparison:
    production_frames: int
    candidate_frames: int
    # SHADOW: the frames both answered (each the other's too); CANARY: None.
    shared_frames: int | None
    categories: list[CategoryComparison]


@dataclass(frozen=True, slots=True)
class Versions:
    candidate: tuple[str, str]
    production: tuple[str, str]
    since: datetime
    until: datetime | None  # None: under way


class TrialComparisons:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def shadow(
        self, versions: Versions, thresholds: Mapping[str, float], default_threshold: float
    ) -> Comparison:
        arguments = (*versions.candidate, *versions.production, versions.since, versions.until)
        frames = int(await self._uow.fetchval(SHADOW_FRAMES, *arguments) or 0)
        rows = await self._uow.fetch(
            SHADOW, *arguments, list(thresholds), list(thresholds.values()), default_threshold
        )
        categories: dict[str, CategoryComparison] = {}
        for row in rows:
            item = categories.setdefault(
                row["category"],
                CategoryComparison(row["category"], both=0, production_only=0, candidate_only=0),
            )
            n, outcome = row["n"], row["outcome"]
            assert item.both is not None and item.production_only is not None
            assert item.candidate_only is not None
            if row["p"]:
                item.production = item.production + _counted(outcome, n)
            if row["p"] and row["c"]:
                item.both += n
                item.candidate = item.candidate + _counted(outcome, n)
            elif row["p"]:
                item.production_only += n
            else:
                item.candidate_only += n
        return Comparison(frames, frames, frames, sorted(categories.values(), key=_by_category))

    async def canary(self, versions: Versions) -> Comparison:
        arguments = (*versions.candidate, *versions.production, versions.since, versions.until)
        frames = {
            row["candidate"]: row["n"] for row in await self._uow.fetch(CANARY_FRAMES, *arguments)
        }
        categories: dict[str, CategoryComparison] = {}
        for row in await self._uow.fetch(CANARY, *arguments):
            item = categories.setdefault(row["category"], CategoryComparison(row["category"]))
            counted = _counted(row["outcome"], row["n"])
            if row["candidate"]:
                item.candidate = item.candidate + counted
            else:
                item.production = item.production + counted
        return Comparison(
            frames.get(False, 0),
            frames.get(True, 0),
            None,
            sorted(categories.values(), key=_by_category),
        )


def _counted(outcome: str | None, n: int) -> OutcomeCounts:
    name = OUTCOME_FIELDS.get(outcome or "")
    return OutcomeCounts(**{name: n}) if name is not None else OutcomeCounts()


def _by_category(item: CategoryComparison) -> str:
    return item.category
