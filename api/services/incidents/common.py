"""What every incident command shares: the caller's access, repositories, checks on input."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from api.access.scope import AccessScope
from api.domain import lifecycle
from api.domain.errors import InvalidInput, NotFound, VersionConflict
from api.domain.lifecycle import ClosingReason, IncidentAction, IncidentStatus
from api.domain.models import IncidentRecord
from api.domain.sla import SlaCalendar
from api.policy import resources
from api.repositories.assets import AssetRepository
from api.repositories.bureaus import BureauRepository
from api.repositories.idempotency import IdempotencyRepository
from api.repositories.incidents import IncidentChange, IncidentRepository

# The policy action each workflow step needs (see policies/incidents.cedar).
POLICY_ACTIONS = {
    IncidentAction.VERIFY: "VerifyIncident",
    IncidentAction.DISPATCH: "DispatchIncident",
    IncidentAction.START_WORK: "StartWork",
    IncidentAction.RESOLVE: "ResolveIncident",
    IncidentAction.REOPEN: "ReopenIncident",
    IncidentAction.CLOSE: "CloseIncident",
    IncidentAction.TRANSFER: "TransferIncident",
    IncidentAction.MARK_DUPLICATE: "MarkDuplicate",
}


def text(field: str, value: str, *, required: bool, limit: int) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidInput(field, "must not be empty")
    if len(value) > limit:
        raise InvalidInput(field, f"must be at most {limit} characters")
    return value


def optional_text(field: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    return text(field, value, required=False, limit=limit) or None


def payload(value: Any) -> Any:
    """A JSON-ready form of a dataclass, for request fingerprints."""
    return {
        key: (v.isoformat() if isinstance(v, datetime) else v) for key, v in asdict(value).items()
    }


class IncidentCommand:
    """A change to incidents made on the caller's behalf, in the caller's transaction.

    Each public method runs in its own savepoint, so an expected failure leaves nothing behind.
    """

    def __init__(self, access: AccessScope, calendar: SlaCalendar, key_ttl_hours: int) -> None:
        self._access = access
        self._uow = access.uow
        self._principal = access.principal
        self._actor = access.principal.subject
        self._calendar = calendar
        self._authorizer = access.authorizer
        self.incidents = IncidentRepository(access.uow)
        self._bureaus = BureauRepository(access.uow)
        self._assets = AssetRepository(access.uow)
        self._keys = IdempotencyRepository(access.uow, key_ttl_hours)

    async def _current(
        self,
        incident_id: int,
        expected_version: int,
        policy_action: str,
        context: dict[str, str] | None = None,
    ) -> IncidentRecord:
        """The incident, if the caller may see it, may take ``policy_action`` on it, and read
        the version it is at now."""
        self._access.audit.targeted("Incident", incident_id)
        incident = await self.incidents.get(incident_id)
        await self._require(policy_action, incident.id, context)
        if incident.version != expected_version:
            raise VersionConflict("incident", expected_version, incident.version)
        return incident

    async def _require(
        self, policy_action: str, incident_id: int, context: dict[str, str] | None = None
    ) -> None:
        self._access.audit.targeted("Incident", incident_id)
        facts = (await self.incidents.facts([incident_id])).get(incident_id)
        if facts is None:
            raise NotFound("incident", incident_id)
        self._authorizer.require(policy_action, resources.incident_entity(facts), context)

    async def _move(
        self,
        incident: IncidentRecord,
        action: IncidentAction,
        note: str,
        *,
        closing_reason: ClosingReason | None = None,
        responsible_bureau_id: int | None = None,
        duplicate_of_id: int | None = None,
        data: dict[str, Any] | None = None,
        involve: tuple[int, ...] = (),
    ) -> IncidentRecord:
        transition = lifecycle.plan(IncidentStatus(incident.status), action, closing_reason)
        change = IncidentChange(
            status=transition.to_status.value,
            closing_reason=transition.closing_reason.value if transition.closing_reason else None,
            responsible_bureau_id=responsible_bureau_id or incident.responsible_bureau_id,
            duplicate_of_id=duplicate_of_id,
            event_kind=action.value,
            from_status=incident.status,
            note=text("note", note, required=False, limit=4000),
            data=data or {},
            involve_bureau_ids=involve,
        )
        return await self.incidents.apply_change(incident.id, incident.version, change, self._actor)
