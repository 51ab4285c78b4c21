"""The incident workflow: discover → report → dispatch → close (發現 → 通報 → 派工 → 結案).

Every action is checked by the pure state machine (``api.domain.lifecycle``) against the
incident as read, then written with the version the caller saw; each write runs in its own
savepoint, so an expected failure leaves nothing behind.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api.auth.principal import Principal
from api.db.unit_of_work import UnitOfWork
from api.domain import lifecycle
from api.domain.errors import InvalidInput, NotFound, TransitionRejected, VersionConflict
from api.domain.geo import Wgs84Point
from api.domain.lifecycle import ClosingReason, IncidentAction, IncidentStatus
from api.domain.models import IncidentRecord, TransferRecord, WorkOrderRecord
from api.domain.sla import ServiceLevel, SlaCalendar
from api.policy import resources
from api.policy.authorizer import Authorizer
from api.repositories.assets import AssetRepository
from api.repositories.bureaus import BureauRepository
from api.repositories.idempotency import IdempotencyRepository
from api.repositories.incidents import (
    IncidentChange,
    IncidentRepository,
    NewIncident,
    NewWorkOrder,
)
from api.services.idempotency import once

SOURCES = ("VLM", "CITIZEN_1999", "STAFF", "SENSOR")
# Machine findings wait for a person to verify them; a person's report is verified on arrival.
INITIAL_STATUS = {
    "VLM": IncidentStatus.DETECTED,
    "SENSOR": IncidentStatus.DETECTED,
    "CITIZEN_1999": IncidentStatus.VERIFIED,
    "STAFF": IncidentStatus.VERIFIED,
}
ACTIVE_WORK_ORDERS = ("OPEN", "IN_PROGRESS")
MAX_CLOCK_SKEW = timedelta(minutes=5)
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+?[0-9 ()#-]{3,40}$")


@dataclass(frozen=True, slots=True)
class IncidentReport:
    title: str
    category: str
    source: str
    description: str = ""
    location: Wgs84Point | None = None
    asset_id: int | None = None
    reported_at: datetime | None = None
    reporter_name: str | None = None
    reporter_phone: str | None = None
    reporter_email: str | None = None
    reporter_note: str | None = None


@dataclass(frozen=True, slots=True)
class WorkOrderSpec:
    crew: str
    instructions: str = ""
    due_at: datetime | None = None


def _text(field: str, value: str, *, required: bool, limit: int) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidInput(field, "must not be empty")
    if len(value) > limit:
        raise InvalidInput(field, f"must be at most {limit} characters")
    return value


def _optional_text(field: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    return _text(field, value, required=False, limit=limit) or None


def _payload(value: Any) -> Any:
    """A JSON-ready form of a dataclass, for request fingerprints."""
    return {
        key: (v.isoformat() if isinstance(v, datetime) else v) for key, v in asdict(value).items()
    }


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


class IncidentWorkflow:
    def __init__(
        self,
        uow: UnitOfWork,
        principal: Principal,
        calendar: SlaCalendar,
        key_ttl_hours: int,
        authorizer: Authorizer,
    ) -> None:
        self._uow = uow
        self._actor = principal.subject
        self._principal = principal
        self._calendar = calendar
        self._authorizer = authorizer
        self.incidents = IncidentRepository(uow)
        self._bureaus = BureauRepository(uow)
        self._assets = AssetRepository(uow)
        self._keys = IdempotencyRepository(uow, key_ttl_hours)

    # --- report (通報) --------------------------------------------------------------------

    async def report(
        self, report: IncidentReport, idempotency_key: str | None
    ) -> tuple[IncidentRecord, bool]:
        """Record a new incident, routed to the bureau responsible for its category."""
        self._authorizer.require("CreateIncident", resources.INCIDENTS)
        async with self._uow.savepoint():
            return await once(
                self._keys,
                subject=self._actor,
                key=idempotency_key,
                operation="createIncident",
                payload=_payload(report),
                create=lambda: self._create(report),
                replay=self.incidents.get,
            )

    async def _create(self, report: IncidentReport) -> tuple[IncidentRecord, int]:
        title = _text("title", report.title, required=True, limit=200)
        description = _text("description", report.description, required=False, limit=10_000)
        if report.source not in SOURCES:
            raise InvalidInput("source", f"must be one of {', '.join(SOURCES)}")
        reporter_email = _optional_text("reporter.email", report.reporter_email, 320)
        if reporter_email is not None and not EMAIL.match(reporter_email):
            raise InvalidInput("reporter.email", "is not an e-mail address")
        reporter_phone = _optional_text("reporter.phone", report.reporter_phone, 40)
        if reporter_phone is not None and not PHONE.match(reporter_phone):
            raise InvalidInput("reporter.phone", "is not a telephone number")
        now = datetime.now(UTC)
        reported_at = report.reported_at or now
        if reported_at.tzinfo is None:
            raise InvalidInput("reportedAt", "must include a time zone offset")
        if reported_at > now + MAX_CLOCK_SKEW:
            raise InvalidInput("reportedAt", "is in the future")
        categories = await self._bureaus.categories_by_code([report.category])
        category = categories.get(report.category)
        if category is None:
            raise InvalidInput("category", f"unknown category {report.category!r}")
        location = report.location
        involved = {self._principal.bureau_id}
        if report.asset_id is not None:
            assets = await self._assets.by_ids([report.asset_id])
            asset = assets.get(report.asset_id)
            if asset is None:
                raise NotFound("asset", report.asset_id)
            involved.add(asset.bureau_id)
            if location is None:
                location = Wgs84Point(asset.latitude, asset.longitude)
        if location is None:
            raise InvalidInput("location", "give a location or an asset")
        level = ServiceLevel(category.sla_working_days, category.sla_hours)
        record = await self.incidents.create(
            NewIncident(
                title=title,
                description=description,
                category=category.code,
                status=INITIAL_STATUS[report.source],
                source=report.source,
                responsible_bureau_id=category.responsible_bureau_id,
                reporting_bureau_id=self._principal.bureau_id,
                asset_id=report.asset_id,
                latitude=location.latitude,
                longitude=location.longitude,
                reporter_name=_optional_text("reporter.name", report.reporter_name, 200),
                reporter_phone=reporter_phone,
                reporter_email=reporter_email,
                reporter_note=_optional_text("reporter.personalNote", report.reporter_note, 4000),
                reported_at=reported_at,
                due_at=self._calendar.due_at(reported_at, level),
                involved_bureau_ids=tuple(
                    sorted(
                        b for b in involved if b is not None and b != category.responsible_bureau_id
                    )
                ),
            ),
            self._actor,
        )
        return record, record.id

    # --- lifecycle steps ----------------------------------------------------------------

    async def _current(
        self, incident_id: int, expected_version: int, policy_action: str
    ) -> IncidentRecord:
        """The incident, if the caller may see it, may take ``policy_action`` on it, and read
        the version it is at now."""
        incident = await self.incidents.get(incident_id)
        await self._require(policy_action, incident.id)
        if incident.version != expected_version:
            raise VersionConflict("incident", expected_version, incident.version)
        return incident

    async def _require(self, policy_action: str, incident_id: int) -> None:
        facts = (await self.incidents.facts([incident_id])).get(incident_id)
        if facts is None:
            raise NotFound("incident", incident_id)
        self._authorizer.require(policy_action, resources.incident_entity(facts))

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
            note=_text("note", note, required=False, limit=4000),
            data=data or {},
            involve_bureau_ids=involve,
        )
        return await self.incidents.apply_change(incident.id, incident.version, change, self._actor)

    async def act(
        self,
        incident_id: int,
        expected_version: int,
        action: IncidentAction,
        note: str = "",
        closing_reason: ClosingReason | None = None,
    ) -> IncidentRecord:
        """Verify, start work, resolve, reopen or close an incident."""
        if action in (A.DISPATCH, A.TRANSFER, A.MARK_DUPLICATE):
            raise ValueError(f"{action} has its own method")
        async with self._uow.savepoint():
            incident = await self._current(incident_id, expected_version, POLICY_ACTIONS[action])
            # Check the transition before touching work orders.
            lifecycle.plan(IncidentStatus(incident.status), action, closing_reason)
            moved: list[WorkOrderRecord] = []
            if action is A.START_WORK:
                moved = await self.incidents.move_work_orders(incident.id, ["OPEN"], "IN_PROGRESS")
            elif action is A.RESOLVE:
                moved = await self.incidents.move_work_orders(
                    incident.id, ACTIVE_WORK_ORDERS, "COMPLETED"
                )
            elif action is A.CLOSE:
                moved = await self.incidents.move_work_orders(
                    incident.id, ACTIVE_WORK_ORDERS, "CANCELLED"
                )
            data = {"work_orders": [order.id for order in moved]} if moved else {}
            return await self._move(
                incident, action, note, closing_reason=closing_reason, data=data
            )

    async def dispatch(
        self,
        incident_id: int,
        expected_version: int,
        order: WorkOrderSpec,
        note: str,
        idempotency_key: str | None,
    ) -> tuple[IncidentRecord, WorkOrderRecord, bool]:
        """Dispatch (派工): the incident goes to a crew of its responsible bureau."""

        async def create() -> tuple[tuple[IncidentRecord, WorkOrderRecord], int]:
            incident = await self._current(incident_id, expected_version, "DispatchIncident")
            lifecycle.plan(IncidentStatus(incident.status), A.DISPATCH)
            work_order = await self.incidents.create_work_order(
                incident.id,
                incident.responsible_bureau_id,
                self._work_order(order, incident),
                self._actor,
            )
            moved = await self._move(incident, A.DISPATCH, note, data={"work_order": work_order.id})
            return (moved, work_order), work_order.id

        async def replay(work_order_id: int) -> tuple[IncidentRecord, WorkOrderRecord]:
            work_order = (await self.incidents.work_orders_by_ids([work_order_id]))[work_order_id]
            return await self.incidents.get(work_order.incident_id), work_order

        async with self._uow.savepoint():
            (incident, work_order), replayed = await once(
                self._keys,
                subject=self._actor,
                key=idempotency_key,
                operation="dispatchIncident",
                payload={"incident": incident_id, "version": expected_version, **_payload(order)},
                create=create,
                replay=replay,
            )
            return incident, work_order, replayed

    async def transfer(
        self, incident_id: int, expected_version: int, to_bureau_id: int, reason: str
    ) -> tuple[IncidentRecord, TransferRecord]:
        """Hand the incident to another bureau (the current one declines responsibility)."""
        async with self._uow.savepoint():
            reason = _text("reason", reason, required=True, limit=2000)
            incident = await self._current(incident_id, expected_version, "TransferIncident")
            lifecycle.plan(IncidentStatus(incident.status), A.TRANSFER)
            if to_bureau_id == incident.responsible_bureau_id:
                raise InvalidInput("toBureauId", "the incident is already with that bureau")
            if to_bureau_id not in await self._bureaus.by_ids([to_bureau_id]):
                raise NotFound("bureau", to_bureau_id)
            cancelled = await self.incidents.move_work_orders(
                incident.id, ACTIVE_WORK_ORDERS, "CANCELLED"
            )
            transfer = await self.incidents.record_transfer(
                incident.id, incident.responsible_bureau_id, to_bureau_id, reason, self._actor
            )
            moved = await self._move(
                incident,
                A.TRANSFER,
                reason,
                responsible_bureau_id=to_bureau_id,
                involve=(incident.responsible_bureau_id,),
                data={
                    "transfer": transfer.id,
                    "from_bureau": incident.responsible_bureau_id,
                    "to_bureau": to_bureau_id,
                    "cancelled_work_orders": [order.id for order in cancelled],
                },
            )
            return moved, transfer

    async def mark_duplicate(
        self, incident_id: int, expected_version: int, canonical_id: int, note: str
    ) -> IncidentRecord:
        """Close the incident as a duplicate of ``canonical_id``."""
        async with self._uow.savepoint():
            if canonical_id == incident_id:
                raise InvalidInput("duplicateOf", "an incident cannot duplicate itself")
            incident = await self._current(incident_id, expected_version, "MarkDuplicate")
            lifecycle.plan(IncidentStatus(incident.status), A.MARK_DUPLICATE)
            canonical = (await self.incidents.by_ids([canonical_id])).get(canonical_id)
            if canonical is None:
                raise NotFound("incident", canonical_id)
            if canonical.duplicate_of_id is not None:
                raise InvalidInput(
                    "duplicateOf",
                    f"incident {canonical_id} is itself a duplicate of "
                    f"{canonical.duplicate_of_id}; link to that one",
                )
            cancelled = await self.incidents.move_work_orders(
                incident.id, ACTIVE_WORK_ORDERS, "CANCELLED"
            )
            moved = await self._move(
                incident,
                A.MARK_DUPLICATE,
                note,
                duplicate_of_id=canonical_id,
                data={
                    "duplicate_of": canonical_id,
                    "cancelled_work_orders": [order.id for order in cancelled],
                },
            )
            return moved

    async def share(
        self, incident_id: int, expected_version: int, bureau_id: int, reason: str
    ) -> IncidentRecord:
        """Let another bureau see the incident (the responsible bureau's supervisor decides)."""
        async with self._uow.savepoint():
            reason = _text("reason", reason, required=True, limit=2000)
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

    # --- work orders --------------------------------------------------------------------

    def _work_order(self, order: WorkOrderSpec, incident: IncidentRecord) -> NewWorkOrder:
        crew = _text("workOrder.crew", order.crew, required=True, limit=200)
        instructions = _text(
            "workOrder.instructions", order.instructions, required=False, limit=4000
        )
        if order.due_at is not None and order.due_at.tzinfo is None:
            raise InvalidInput("workOrder.dueAt", "must include a time zone offset")
        return NewWorkOrder(crew, instructions, order.due_at or incident.due_at)

    async def add_work_order(
        self, incident_id: int, order: WorkOrderSpec, idempotency_key: str | None
    ) -> tuple[WorkOrderRecord, bool]:
        """Another crew for an incident already dispatched or in progress."""

        async def create() -> tuple[WorkOrderRecord, int]:
            incident = await self.incidents.get(incident_id)
            await self._require("ManageWorkOrders", incident.id)
            if incident.status not in (S.DISPATCHED, S.IN_PROGRESS):
                raise TransitionRejected(
                    incident.status,
                    "add a work order to",
                    [a.value for a in lifecycle.allowed_actions(IncidentStatus(incident.status))],
                    "work orders are added to DISPATCHED or IN_PROGRESS incidents",
                )
            work_order = await self.incidents.create_work_order(
                incident.id,
                incident.responsible_bureau_id,
                self._work_order(order, incident),
                self._actor,
            )
            await self.incidents.append_event(
                incident.id,
                "WORK_ORDER_CREATED",
                incident.status,
                self._actor,
                "",
                {"work_order": work_order.id},
            )
            return work_order, work_order.id

        async def replay(work_order_id: int) -> WorkOrderRecord:
            return (await self.incidents.work_orders_by_ids([work_order_id]))[work_order_id]

        async with self._uow.savepoint():
            return await once(
                self._keys,
                subject=self._actor,
                key=idempotency_key,
                operation="createWorkOrder",
                payload={"incident": incident_id, **_payload(order)},
                create=create,
                replay=replay,
            )

    async def finish_work_order(
        self, work_order_id: int, outcome: str, note: str
    ) -> WorkOrderRecord:
        """Complete or cancel one work order; the incident's own status is not changed."""
        if outcome not in ("COMPLETED", "CANCELLED"):
            raise ValueError(outcome)
        async with self._uow.savepoint():
            existing = (await self.incidents.work_orders_by_ids([work_order_id])).get(work_order_id)
            if existing is None:
                raise NotFound("work order", work_order_id)
            await self._require("ManageWorkOrders", existing.incident_id)
            finished = await self.incidents.finish_work_order(
                work_order_id, ACTIVE_WORK_ORDERS, outcome
            )
            if finished is None:
                raise InvalidInput("id", f"work order {work_order_id} is already {existing.status}")
            incident = await self.incidents.get(finished.incident_id)
            await self.incidents.append_event(
                incident.id,
                f"WORK_ORDER_{outcome}",
                incident.status,
                self._actor,
                _text("note", note, required=False, limit=4000),
                {"work_order": work_order_id},
            )
            return finished


A = IncidentAction
S = IncidentStatus
