"""Model quality as the caller may see it: per model version, prompt version and category, the
detections' review outcomes, precision with its interval, and calibration (what share of the
detections in each confidence tenth people confirmed).

Counted over the detections the caller may see (row-level security on ``detection_review``,
the detections' own rule), under the detections' policies (``ListIncidents``) and the
registry's (``ViewModelRegistry``); each group returned is audited. Misses (of the threshold,
of the model) are counted as ``api.repositories.quality`` says."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from api.access.scope import AccessScope
from api.domain.quality import CALIBRATION_BINS, OutcomeCounts
from api.policy import resources
from api.repositories.quality import (
    Misses,
    MissWindow,
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


def rolled_up(cells: list[QualityCell], misses: list[Misses]) -> list[VersionQuality]:
    """The cells of each version, prompt and category as one figure with its calibration bins
    (the tenths that hold detections) and its misses, ordered by version, prompt and category
    (a version that only missed a category has a figure for it too)."""
    groups: dict[tuple[str, str, str, str], list[QualityCell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.model, cell.version, cell.prompt_version, cell.category)].append(cell)
    missed = {(m.model, m.version, m.prompt_version, m.category): m for m in misses}
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
            missed[group].threshold if group in missed else 0,
            missed[group].model_misses if group in missed else 0,
        )
        for group in sorted(groups.keys() | missed.keys())
    ]


class QualityReads:
    def __init__(self, access: AccessScope) -> None:
        self._access = access

    async def by_version(
        self, where: QualityFilter, window: MissWindow | None
    ) -> list[VersionQuality]:
        """The figures of what ``where`` selects; misses are counted within ``window`` (not at
        all without one: they cost a probe of the incidents per detection, see
        bench/quality.py)."""
        self._access.authorize("ListIncidents", resources.INCIDENTS)
        self._access.authorize("ViewModelRegistry", resources.MODELS)
        repository = QualityRepository(self._access.uow)
        misses = await repository.misses(where, window) if window is not None else []
        found = rolled_up(await repository.cells(where), misses)
        self._access.audit.saw("ModelQuality", [quality.key for quality in found])
        return found
