"""What the caller may see of frames, their analyses and detections, and the model registry.

Frames and detections are listed under the incident rules (``ListIncidents``); row-level
security then decides every row: a bureau's own cameras, city-wide readers, and whoever sees an
incident the frame is evidence of. Each frame returned is decided by the policies too, as the
database decided it: ``ViewFrames`` on its camera's bureau (frames.view.*), or else
``ViewIncident`` on an incident it is evidence of; a frame the policies do not grant is not
returned, and the audit record names the rules that granted those that are. The image itself is
personal data, decided per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from api.access.scope import AccessScope
from api.domain.errors import NotFound, PersonalDataMasked
from api.policy import resources
from api.repositories.bureaus import BureauRepository
from api.repositories.incidents import IncidentRepository
from api.repositories.sql import Ordering, Page, PageRequest
from api.repositories.vision import (
    DETECTIONS_NEWEST_FIRST,
    AnalysisRecord,
    DetectionFilter,
    DetectionRecord,
    FrameRecord,
    VisionRepository,
)

IMAGE_WITHHELD = (
    "a frame's image may show people: it is shown only to staff of the camera's bureau, or of "
    "the bureau responsible for an incident it is evidence of, whose token grants pii:read"
)


class VisionReads:
    def __init__(self, access: AccessScope) -> None:
        self._access = access
        self._repository = VisionRepository(access.uow)

    def _may_list(self) -> None:
        self._access.authorize("ListIncidents", resources.INCIDENTS)

    def _frames_returned(self, records: Sequence[FrameRecord]) -> None:
        self._access.audit.saw("Frame", [record.key for record in records])

    async def _granted(self, records: Sequence[FrameRecord]) -> list[FrameRecord]:
        """The frames among ``records`` (read under row-level security) the policies let the
        caller see, in order: the frames rules on the camera's bureau, or the incident rules on
        an incident the frame is evidence of (its detections name it)."""
        if not records:
            return []
        authorizer = self._access.authorizer
        bureaus = await BureauRepository(self._access.uow).by_ids(
            sorted({record.bureau_id for record in records})
        )
        granted = {
            record.sha256
            for record in records
            if authorizer.decide(
                "ViewFrames", resources.bureau(bureaus[record.bureau_id].code)
            ).allowed
        }
        rest = [record.sha256 for record in records if record.sha256 not in granted]
        if rest:
            evidence = await self._repository.detections_of_frames(rest)
            named = {
                sha: {d.incident_id for d in found if d.incident_id is not None}
                for sha, found in evidence.items()
            }
            facts = await IncidentRepository(self._access.uow).facts(
                sorted({incident for incidents in named.values() for incident in incidents})
            )
            visible = sorted(facts)
            decisions = authorizer.decide_many(
                "ViewIncident", [resources.incident_entity(facts[i]) for i in visible]
            )
            seen = {i for i, decision in zip(visible, decisions, strict=True) if decision.allowed}
            granted.update(sha for sha, incidents in named.items() if incidents & seen)
        return [record for record in records if record.sha256 in granted]

    def _detections_returned(self, records: Sequence[DetectionRecord]) -> None:
        self._access.audit.saw("Detection", [record.id for record in records])

    # --- frames -------------------------------------------------------------------------------

    async def frames_page(
        self, camera_ids: Sequence[int] | None, request: PageRequest
    ) -> Page[FrameRecord]:
        self._may_list()
        page = await self._repository.frames_page(camera_ids, request)
        page = replace(page, items=await self._granted(page.items))
        self._frames_returned(page.items)
        return page

    async def frames_count(self, camera_ids: Sequence[int] | None) -> int:
        self._may_list()
        return await self._repository.frames_count(camera_ids)

    async def frames(self, digests: Sequence[bytes]) -> dict[bytes, FrameRecord]:
        self._may_list()
        found = await self._repository.frames(digests)
        granted = await self._granted(list(found.values()))
        self._frames_returned(granted)
        return {record.sha256: record for record in granted}

    async def analyses_of(self, digests: Sequence[bytes]) -> dict[bytes, list[AnalysisRecord]]:
        return await self._repository.analyses_of(digests)

    async def image(self, digest: bytes) -> FrameRecord:
        """The frame whose image the caller may see; ``NotFound`` if it may not see the frame,
        ``PersonalDataMasked`` if it sees the frame but not the image."""
        frame = (await self.frames([digest])).get(digest)
        if frame is None:
            raise NotFound("frame", digest.hex())
        bureau = (await BureauRepository(self._access.uow).by_ids([frame.bureau_id]))[
            frame.bureau_id
        ]
        authorizer = self._access.authorizer
        allowed = authorizer.decide("ViewFrameImage", resources.bureau(bureau.code)).allowed
        if not allowed:
            detections = (await self._repository.detections_of_frames([digest])).get(digest, [])
            incident_ids = sorted({d.incident_id for d in detections if d.incident_id})
            facts = await IncidentRepository(self._access.uow).facts(incident_ids)
            decisions = authorizer.decide_many(
                "ViewPersonalData", [resources.incident_entity(facts[i]) for i in sorted(facts)]
            )
            allowed = any(decision.allowed for decision in decisions)
        if not allowed:
            raise PersonalDataMasked(IMAGE_WITHHELD)
        self._access.audit.saw_personal_data("Frame", frame.key)
        return frame

    # --- detections ---------------------------------------------------------------------------

    async def detections_page(
        self,
        where: DetectionFilter,
        request: PageRequest,
        ordering: Ordering = DETECTIONS_NEWEST_FIRST,
    ) -> Page[DetectionRecord]:
        self._may_list()
        page = await self._repository.detections_page(where, request, ordering)
        self._detections_returned(page.items)
        return page

    async def detections_count(self, where: DetectionFilter) -> int:
        self._may_list()
        return await self._repository.detections_count(where)

    async def detections(self, ids: Sequence[int]) -> dict[int, DetectionRecord]:
        self._may_list()
        found = await self._repository.detections(ids)
        self._detections_returned(list(found.values()))
        return found

    async def detections_of_incidents(self, ids: Sequence[int]) -> dict[int, list[DetectionRecord]]:
        found = await self._repository.detections_of_incidents(ids)
        self._detections_returned([d for records in found.values() for d in records])
        return found

    async def detections_of_frames(
        self, digests: Sequence[bytes]
    ) -> dict[bytes, list[DetectionRecord]]:
        found = await self._repository.detections_of_frames(digests)
        self._detections_returned([d for records in found.values() for d in records])
        return found

    # --- the model registry ---------------------------------------------------------------------

    def may_see_registry(self) -> None:
        self._access.authorize("ViewModelRegistry", resources.MODELS)

    async def models(self) -> list[dict[str, Any]]:
        self.may_see_registry()
        return await self._repository.models()

    async def prompts(self) -> list[dict[str, Any]]:
        self.may_see_registry()
        return await self._repository.prompts()
