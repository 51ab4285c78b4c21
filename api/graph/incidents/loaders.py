"""Per-scope DataLoaders for incidents and what hangs off them.

A nested list (events, work orders) is loaded for every incident on the page in one statement,
whatever the page size; loaders for the same field with different arguments are kept apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from api.access.scope import AccessScope
from api.domain.errors import PersonalDataMasked
from api.domain.models import (
    EventRecord,
    IncidentRecord,
    ReporterRecord,
    TransferRecord,
    WorkOrderRecord,
)
from api.domain.search import DuplicateCandidates
from api.graph.core.loaders import Folded, ScopedLoader, lists_of, one_each
from api.repositories.vision import DetectionRecord
from api.services.incidents.reads import IncidentReads, Permitted
from api.services.vision.reads import VisionReads


class IncidentById(ScopedLoader[int, IncidentRecord | None]):
    async def load_batch(self, keys: Sequence[int]) -> list[IncidentRecord | None]:
        found = await IncidentReads(self.access).by_ids(keys)
        return [found.get(key) for key in keys]

    def folded(self) -> Folded | None:
        companion = IncidentReads(self.access).by_ids_companion()
        return one_each(companion, "id") if companion is not None else None


class DuplicatesOf(ScopedLoader[int, list[IncidentRecord]]):
    async def load_batch(self, keys: Sequence[int]) -> list[list[IncidentRecord]]:
        found = await IncidentReads(self.access).duplicates_of(keys)
        return [found.get(key, []) for key in keys]

    def folded(self) -> Folded:
        companion = IncidentReads(self.access).duplicates_companion()
        return lists_of(companion, "duplicate_of_id")


class TransfersOf(ScopedLoader[int, list[TransferRecord]]):
    async def load_batch(self, keys: Sequence[int]) -> list[list[TransferRecord]]:
        found = await IncidentReads(self.access).transfers_for(keys)
        return [found.get(key, []) for key in keys]

    def folded(self) -> Folded:
        return lists_of(IncidentReads(self.access).transfers_companion(), "incident_id")


class WorkOrderById(ScopedLoader[int, WorkOrderRecord | None]):
    async def load_batch(self, keys: Sequence[int]) -> list[WorkOrderRecord | None]:
        found = await IncidentReads(self.access).work_orders_by_ids(keys)
        return [found.get(key) for key in keys]


class ReporterOf(ScopedLoader[int, ReporterRecord | None]):
    """Who reported each incident; a key the caller may not see personal data of fails with
    PersonalDataMasked (the field is null and carries the error)."""

    async def load_batch(
        self, keys: Sequence[int]
    ) -> list[ReporterRecord | PersonalDataMasked | None]:
        return await IncidentReads(self.access).reporters(keys)


class PermittedOf(ScopedLoader[tuple[int, str], Permitted]):
    """What the caller may do to each incident now, keyed by its ID and status as read."""

    async def load_batch(self, keys: Sequence[tuple[int, str]]) -> list[Permitted]:
        found = await IncidentReads(self.access).permitted(keys)
        return [found[key] for key in keys]


class EventsOf(ScopedLoader[int, list[EventRecord]]):
    """An incident's newest (or oldest) ``limit`` events."""

    def __init__(self, access: AccessScope, limit: int, newest_first: bool) -> None:
        super().__init__(access)
        self._limit = limit
        self._newest_first = newest_first

    async def load_batch(self, keys: Sequence[int]) -> list[list[EventRecord]]:
        found = await IncidentReads(self.access).events_for(keys, self._limit, self._newest_first)
        return [found.get(key, []) for key in keys]

    def folded(self) -> Folded:
        reads = IncidentReads(self.access)
        return lists_of(reads.events_companion(self._limit, self._newest_first), "incident_id")


class WorkOrdersOf(ScopedLoader[int, list[WorkOrderRecord]]):
    """An incident's work orders in the given statuses (a sorted tuple)."""

    def __init__(self, access: AccessScope, statuses: tuple[str, ...]) -> None:
        super().__init__(access)
        self._statuses = statuses

    async def load_batch(self, keys: Sequence[int]) -> list[list[WorkOrderRecord]]:
        found = await IncidentReads(self.access).work_orders_for(keys, self._statuses)
        return [found.get(key, []) for key in keys]

    def folded(self) -> Folded:
        companion = IncidentReads(self.access).work_orders_companion(self._statuses)
        return lists_of(companion, "incident_id")


class DuplicateCandidatesOf(ScopedLoader[int, list[tuple[IncidentRecord, float]]]):
    """Incidents each incident may duplicate, with their distances, nearest first."""

    def __init__(self, access: AccessScope, candidates: DuplicateCandidates) -> None:
        super().__init__(access)
        self._candidates = candidates

    async def load_batch(self, keys: Sequence[int]) -> list[list[tuple[IncidentRecord, float]]]:
        found = await IncidentReads(self.access).duplicate_candidates(keys, self._candidates)
        return [found.get(key, []) for key in keys]


class DetectionsOf(ScopedLoader[int, list[DetectionRecord]]):
    """The detections that opened or joined each incident, oldest first."""

    async def load_batch(self, keys: Sequence[int]) -> list[list[DetectionRecord]]:
        found = await VisionReads(self.access).detections_of_incidents(keys)
        return [found.get(key, []) for key in keys]
