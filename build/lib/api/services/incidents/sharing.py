"""Sharing: letting another bureau see an incident (the responsible bureau's supervisor decides)."""

from __future__ import annotations

from api.domain.errors import InvalidInput, NotFound
from api.domain.models import IncidentRecord
from api.repositories.incidents import IncidentChange
from api.services.incidents.common import IncidentCommand, text


class IncidentSharing(IncidentCommand):
    async def share(
        self, incident_id: int, expected_version: int, bureau_id: int, reason: str
    ) -> IncidentRecord:
        """Let ``bureau_id`` see the incident, recorded in its history."""
        async with self._uow.savepoint():
            reason = text("reason", reason, required=True, limit=2000)
            incident = await self._current(incident_id, expected_version, "ShareIncident")
            if bureau_id == incident.responsible_bureau_id:
                raise InvalidInput("bureauId", "the incident is already with that bureau")
            if bureau_id not in await self._bureaus.by_ids([bureau_id]):
                raise NotFound("bureau", bureau_id)
            await self.incidents.share(incident.id, bureau_id, reason, self._actor)
            change = IncidentChange(
                status=incident.status,
                closing_reason=incident.closing_reason,
                responsible_bureau_id=incident.responsible_bureau_id,
                duplicate_of_id=incident.duplicate_of_id,
                event_kind="SHARED",
                from_status=incident.status,
                note=reason,
                data={"bureau": bureau_id},
                involve_bureau_ids=(bureau_id,),
            )
            return await self.incidents.apply_change(
                incident.id, incident.version, change, self._actor
            )
