"""Findings become detections; a detection above its category's threshold opens a DETECTED
incident routed by the routing table, or joins an open incident of the same category nearby.

Concurrent workers do not open two incidents for one problem: the places a batch touches are
locked (advisory locks on a grid of about a kilometre, the point's cell and its neighbours)
until the transaction commits, and the search for an incident to join runs under that lock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.access.scope import AccessScope
from api.domain.findings import Finding
from api.domain.geo import Wgs84Point
from api.domain.lifecycle import IncidentSource
from api.domain.models import CategoryRecord
from api.domain.sla import SlaCalendar
from api.repositories.bureaus import BureauRepository
from api.repositories.vision import (
    DedupWindow,
    DetectionRecord,
    NewDetection,
    VisionRepository,
)
from api.services.incidents.reporting import IncidentReport, IncidentReporting
from api.settings import VisionSettings

EARTH_METRES_PER_DEGREE = 111_320.0
CELL_DEGREES = 0.01


@dataclass(frozen=True, slots=True)
class Observation:
    """A finding, where and from what it was seen."""

    analysis_id: int
    frame_sha256: bytes
    camera_id: int
    camera_code: str
    bureau_id: int
    latitude: float
    longitude: float
    captured_at: datetime
    finding: Finding


def dedup_window(settings: VisionSettings) -> DedupWindow:
    """The deduplication distance and time in force, as detections are recorded with them."""
    return DedupWindow(settings.dedup_meters, settings.dedup_hours * 3600)


class DetectionIngest:
    def __init__(
        self,
        access: AccessScope,
        calendar: SlaCalendar,
        settings: VisionSettings,
        key_ttl_hours: int,
        thresholds: Mapping[str, float] | None = None,
    ) -> None:
        self._access = access
        self._settings = settings
        # The thresholds the city's model officers decided (migration 0017), over the settings'.
        self._thresholds = thresholds or {}
        self._repository = VisionRepository(access.uow)
        self._bureaus = BureauRepository(access.uow)
        self._reporting = IncidentReporting(access, calendar, key_ttl_hours)

    def threshold_for(self, category: str) -> float:
        decided = self._thresholds.get(category)
        return decided if decided is not None else self._settings.threshold_for(category)

    async def ingest(self, observations: Sequence[Observation]) -> list[DetectionRecord]:
        """Record ``observations`` as detections, opening or joining incidents for those above
        their threshold; in the caller's transaction."""
        window = dedup_window(self._settings)
        counted = [
            (index, o)
            for index, o in enumerate(observations)
            if o.finding.confidence >= self.threshold_for(o.finding.category)
        ]
        incidents: dict[int, int] = {}  # index in observations -> incident id
        outcomes: dict[int, str] = {}
        if counted:
            await self._repository.lock_cells(
                [
                    cell
                    for _, o in counted
                    for cell in _cells(o.finding.category, o.latitude, o.longitude)
                ]
            )
            since = datetime.now(UTC) - timedelta(seconds=window.seconds)
            matches = await self._repository.nearby_open(
                [(o.finding.category, o.latitude, o.longitude) for _, o in counted],
                window.meters,
                since,
            )
            # Findings no open incident is near: the first of each place opens one, and those
            # near it in this batch join it.
            openers: list[tuple[int, Observation]] = []
            joining: dict[int, int] = {}  # index -> index of the opener it joins
            for (index, observation), match in zip(counted, matches, strict=True):
                if match is not None:
                    incidents[index], outcomes[index] = match, "ATTACHED"
                    continue
                opener = next(
                    (
                        first
                        for first, earlier in openers
                        if earlier.finding.category == observation.finding.category
                        and _metres(earlier, observation) <= window.meters
                    ),
                    None,
                )
                if opener is None:
                    openers.append((index, observation))
                else:
                    joining[index] = opener
            if openers:
                names = await self._bureaus.categories_by_code(
                    sorted({o.finding.category for _, o in openers})
                )
                opened = await self._reporting.report_many(
                    [_report(names[o.finding.category], o) for _, o in openers]
                )
                for (index, _), record in zip(openers, opened, strict=True):
                    incidents[index], outcomes[index] = record.id, "OPENED"
            for index, opener in joining.items():
                incidents[index], outcomes[index] = incidents[opener], "ATTACHED"
        detections = await self._repository.add_detections(
            [
                NewDetection(
                    analysis_id=o.analysis_id,
                    frame_sha256=o.frame_sha256,
                    camera_id=o.camera_id,
                    bureau_id=o.bureau_id,
                    category=o.finding.category,
                    confidence=o.finding.confidence,
                    note=o.finding.note,
                    latitude=o.latitude,
                    longitude=o.longitude,
                    outcome=outcomes.get(index, "BELOW_THRESHOLD"),
                    incident_id=incidents.get(index),
                )
                for index, o in enumerate(observations)
            ],
            window,
        )
        self._access.audit.saw("Detection", [d.id for d in detections])
        self._access.audit.saw("Incident", sorted(set(incidents.values())))
        return detections


def _report(category: CategoryRecord, observation: Observation) -> IncidentReport:
    return IncidentReport(
        title=f"{category.name_zh}（{observation.camera_code}）",
        category=category.code,
        source=IncidentSource.VLM,
        description=observation.finding.note,
        location=Wgs84Point(observation.latitude, observation.longitude),
        asset_id=observation.camera_id,
        reported_at=min(observation.captured_at, datetime.now(UTC)),
    )


def _cells(category: str, latitude: float, longitude: float) -> list[str]:
    """The grid cell of a point and its neighbours: any two points closer than a cell's size
    share at least one of them."""
    row, column = math.floor(latitude / CELL_DEGREES), math.floor(longitude / CELL_DEGREES)
    return [f"{category}:{row + dr}:{column + dc}" for dr in (-1, 0, 1) for dc in (-1, 0, 1)]


def _metres(a: Observation, b: Observation) -> float:
    """Distance on a small scale (equirectangular: exact enough within the dedup radius)."""
    mean = math.radians((a.latitude + b.latitude) / 2)
    dx = (a.longitude - b.longitude) * math.cos(mean) * EARTH_METRES_PER_DEGREE
    dy = (a.latitude - b.latitude) * EARTH_METRES_PER_DEGREE
    return math.hypot(dx, dy)
