"""Model quality as the caller may see it: per model version, prompt version and category, the
detections' review outcomes, precision with its interval, and calibration (what share of the
detections in each confidence tenth people confirmed).

Counted over the detections the caller may see (row-level security on ``detection_review``,
the detections' own rule), under the detections' policies (``ListIncidents``) and the
registry's (``ViewModelRegistry``); each group returned is audited. Misses (of the threshold,
kept up as incidents move; of the model, counted on reading) are as ``api.repositories.quality``
says."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from api.access.scope import AccessScope
from api.domain.quality import CALIBRATION_BINS, OutcomeCounts
from api.policy import resources
from api.repositories.quality import (
    ModelMisses,
    QualityCell,
    QualityFilter,
    QualityRepository,
)


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    low: float
    high: float
    counts: OutcomeCounts


@dataclass(frozen=True, slots=True)
class VersionQuality:
    model: str
    version: str
    prompt_version: str
    category: str
    counts: OutcomeCounts
    calibration: tuple[CalibrationBin, ...]
    threshold_misses: int = 0
    model_misses: int = 0

    @property
    def key(self) -> str:
        return f"{self.model}@{self.version}/{self.prompt_version}/{self.category}"


def rolled_up(cells: list[QualityCell], misses: list[ModelMisses]) -> list[VersionQuality]:
    """The cells of each version, prompt and category as one figure with its calibration bins
    (the tenths that hold detections) and its misses, ordered by version, prompt and category
    (a version that only missed a category has a figure for it too)."""
    groups: dict[tuple[str, str, str, str], list[QualityCell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.model, cell.version, cell.prompt_version, cell.category)].append(cell)
    missed = {(m.model, m.version, m.prompt_version, m.category): m.missed for m in misses}
    return [
        VersionQuality(
            *group,
            OutcomeCounts.total(cell.counts for cell in groups.get(group, [])),
            tuple(
                CalibrationBin(
                    cell.bin / CALIBRATION_BINS, (cell.bin + 1) / CALIBRATION_BINS, cell.counts
                )
                for cell in groups.get(group, [])
            ),
            sum(cell.threshold_misses for cell in groups.get(group, [])),
            missed.get(group, 0),
        )
        for group in sorted(groups.keys() | missed.keys())
    ]


class QualityReads:
    def __init__(self, access: AccessScope) -> None:
        self._access = access

    async def by_version(
        self, where: QualityFilter, model_miss_seconds: float | None
    ) -> list[VersionQuality]:
        """The figures of what ``where`` selects; misses of the model are counted within
        ``model_miss_seconds`` before each report (not at all without it: they cost a search
        of the cameras' frames per report, see bench/quality.py)."""
        self._access.authorize("ListIncidents", resources.INCIDENTS)
        self._access.authorize("ViewModelRegistry", resources.MODELS)
        repository = QualityRepository(self._access.uow)
        misses = (
            await repository.model_misses(where, model_miss_seconds)
            if model_miss_seconds is not None
            else []
        )
        found = rolled_up(await repository.cells(where), misses)
        self._access.audit.saw("ModelQuality", [quality.key for quality in found])
        return found
