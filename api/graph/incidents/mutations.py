"""Mutations for every step of the incident workflow.

Each returns a union of its success type and typed errors; on an error nothing was written.
Changes take ``expectedVersion`` (the ``version`` the caller read): a stale version is a
``VersionConflict``, never a lost update. Creating mutations take an ``idempotencyKey``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import strawberry

from api.domain import lifecycle
from api.domain.errors import DomainError
from api.domain.models import IncidentRecord, WorkOrderRecord
from api.graph.core import errors
from api.graph.core.context import Info
from api.graph.core.geo import PointInput, to_point
from api.graph.core.ids import decode_id
from api.graph.incidents.types import (
    ClosingReason,
    Incident,
    IncidentSource,
    IncidentTransfer,
    WorkOrder,
    WorkOrderStatus,
)
from api.services.incidents.common import IncidentCommand
from api.services.incidents.lifecycle import IncidentLifecycle
from api.services.incidents.reporting import IncidentReport, IncidentReporting
from api.services.incidents.sharing import IncidentSharing
from api.services.incidents.work_orders import WorkOrders, WorkOrderSpec

C = TypeVar("C", bound=IncidentCommand)

# --- inputs ---------------------------------------------------------------------------------


@strawberry.input(description="The reporter's contact details (personal data).")
class ReporterInput:
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    personal_note: str | None = strawberry.field(
        default=None, description="Free text from the reporter that may identify people."
    )


@strawberry.input
class CreateIncidentInput:
    title: str
    category: str = strawberry.field(description="A category code; see `categories`.")
    source: IncidentSource
    description: str = ""
    location: PointInput | None = strawberry.field(
        default=None, description="Where it is; defaults to the asset's location."
    )
    asset_id: strawberry.ID | None = None
    reported_at: datetime | None = strawberry.field(default=None, description="Defaults to now.")
    reporter: ReporterInput | None = None


@strawberry.input
class IncidentStepInput:
    id: strawberry.ID
    expected_version: int
    note: str = ""


@strawberry.input
class CloseIncidentInput:
    id: strawberry.ID
    expected_version: int
    reason: ClosingReason
    note: str = ""


@strawberry.input
class WorkOrderInput:
    crew: str
    instructions: str = ""
    due_at: datetime | None = strawberry.field(
        default=None, description="Defaults to the incident's due date."
    )


@strawberry.input
class DispatchIncidentInput:
    id: strawberry.ID
    expected_version: int
    work_order: WorkOrderInput
    note: str = ""


@strawberry.input
class TransferIncidentInput:
    id: strawberry.ID
    expected_version: int
    to_bureau_id: strawberry.ID
    reason: str


@strawberry.input
class MarkDuplicateInput:
    id: strawberry.ID
    expected_version: int
    duplicate_of: strawberry.ID
    note: str = ""


@strawberry.input
class ShareIncidentInput:
    id: strawberry.ID
    expected_version: int
    bureau_id: strawberry.ID
    reason: str


@strawberry.input
class CreateWorkOrderInput:
    incident_id: strawberry.ID
    work_order: WorkOrderInput


@strawberry.input
class FinishWorkOrderInput:
    id: strawberry.ID
    note: str = ""


# --- results --------------------------------------------------------------------------------


@strawberry.type
class IncidentCreated:
    incident: Incident
    replayed: bool = strawberry.field(
        description="True when this answers a retry of an earlier request with the same key."
    )


@strawberry.type
class IncidentUpdated:
    incident: Incident


@strawberry.type
class IncidentDispatched:
    incident: Incident
    work_order: WorkOrder
    replayed: bool


@strawberry.type
class IncidentTransferred:
    incident: Incident
    transfer: IncidentTransfer


@strawberry.type
class WorkOrderCreated:
    work_order: WorkOrder
    replayed: bool


@strawberry.type
class WorkOrderUpdated:
    work_order: WorkOrder


CreateIncidentResult = Annotated[
    IncidentCreated
    | errors.InvalidInput
    | errors.NotFound
    | errors.IdempotencyKeyReused
    | errors.Forbidden,
    strawberry.union("CreateIncidentResult"),
]
UpdateIncidentResult = Annotated[
    IncidentUpdated
    | errors.NotFound
    | errors.InvalidInput
    | errors.TransitionRejected
    | errors.VersionConflict
    | errors.Forbidden,
    strawberry.union("UpdateIncidentResult"),
]
DispatchIncidentResult = Annotated[
    IncidentDispatched
    | errors.NotFound
    | errors.InvalidInput
    | errors.TransitionRejected
    | errors.VersionConflict
    | errors.IdempotencyKeyReused
    | errors.Forbidden,
    strawberry.union("DispatchIncidentResult"),
]
TransferIncidentResult = Annotated[
    IncidentTransferred
    | errors.NotFound
    | errors.InvalidInput
    | errors.TransitionRejected
    | errors.VersionConflict
    | errors.Forbidden,
    strawberry.union("TransferIncidentResult"),
]
CreateWorkOrderResult = Annotated[
    WorkOrderCreated
    | errors.NotFound
    | errors.InvalidInput
    | errors.TransitionRejected
    | errors.IdempotencyKeyReused
    | errors.Forbidden,
    strawberry.union("CreateWorkOrderResult"),
]
FinishWorkOrderResult = Annotated[
    WorkOrderUpdated | errors.NotFound | errors.InvalidInput | errors.Forbidden,
    strawberry.union("FinishWorkOrderResult"),
]


def _command(info: Info, command: type[C]) -> C:
    """An incident command acting for the caller, in the operation's transaction."""
    resources = info.context.resources
    return command(
        info.context.access, resources.calendar, resources.settings.city.idempotency_key_ttl_hours
    )


async def _typed(info: Info, call: Callable[[], Awaitable[Any]]) -> Any:
    """Run a use case; an expected failure becomes the schema's error object, and its code the
    outcome in the operation's audit record."""
    try:
        return await call()
    except DomainError as error:
        info.context.audit.outcome = error.code
        return errors.to_graphql(error)


def _returned(info: Info, record: IncidentRecord) -> Incident:
    """The changed incident, noted in the operation's audit record."""
    info.context.audit.saw("Incident", record.id)
    return Incident.from_record(record)


def _returned_order(info: Info, record: WorkOrderRecord) -> WorkOrder:
    info.context.audit.saw("Incident", record.incident_id)
    info.context.audit.saw("WorkOrder", record.id)
    return WorkOrder.from_record(record)


def _incident_id(value: strawberry.ID, field: str = "input.id") -> int:
    return decode_id(value, "Incident", field)


def _work_order(value: WorkOrderInput) -> WorkOrderSpec:
    return WorkOrderSpec(crew=value.crew, instructions=value.instructions, due_at=value.due_at)


async def _step(
    info: Info, input: IncidentStepInput, action: lifecycle.IncidentAction
) -> UpdateIncidentResult:
    async def run() -> IncidentUpdated:
        record = await _command(info, IncidentLifecycle).act(
            _incident_id(input.id), input.expected_version, action, input.note
        )
        return IncidentUpdated(incident=_returned(info, record))

    return await _typed(info, run)  # type: ignore[no-any-return]


async def _finish(
    info: Info, input: FinishWorkOrderInput, outcome: WorkOrderStatus
) -> FinishWorkOrderResult:
    async def run() -> WorkOrderUpdated:
        order = await _command(info, WorkOrders).finish(
            decode_id(input.id, "WorkOrder", "input.id"), outcome, input.note
        )
        return WorkOrderUpdated(work_order=_returned_order(info, order))

    return await _typed(info, run)  # type: ignore[no-any-return]


@strawberry.type
class IncidentMutations:
    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Report an incident (通報); it is routed by category.",
    )
    async def create_incident(
        self, info: Info, input: CreateIncidentInput, idempotency_key: str | None = None
    ) -> CreateIncidentResult:
        async def run() -> IncidentCreated:
            reporter = input.reporter or ReporterInput()
            report = IncidentReport(
                title=input.title,
                category=input.category,
                source=input.source,
                description=input.description,
                location=to_point(input.location, info, "input.location")
                if input.location
                else None,
                asset_id=decode_id(input.asset_id, "Asset", "input.assetId")
                if input.asset_id
                else None,
                reported_at=input.reported_at,
                reporter_name=reporter.name,
                reporter_phone=reporter.phone,
                reporter_email=reporter.email,
                reporter_note=reporter.personal_note,
            )
            record, replayed = await _command(info, IncidentReporting).report(
                report, idempotency_key
            )
            return IncidentCreated(incident=_returned(info, record), replayed=replayed)

        return await _typed(info, run)  # type: ignore[no-any-return]

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Confirm a detected incident is real (DETECTED → VERIFIED).",
    )
    async def verify_incident(self, info: Info, input: IncidentStepInput) -> UpdateIncidentResult:
        return await _step(info, input, lifecycle.IncidentAction.VERIFY)

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="The crew starts work (DISPATCHED → IN_PROGRESS).",
    )
    async def start_work(self, info: Info, input: IncidentStepInput) -> UpdateIncidentResult:
        return await _step(info, input, lifecycle.IncidentAction.START_WORK)

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="The work is done (IN_PROGRESS → RESOLVED).",
    )
    async def resolve_incident(self, info: Info, input: IncidentStepInput) -> UpdateIncidentResult:
        return await _step(info, input, lifecycle.IncidentAction.RESOLVE)

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="The fix did not hold (RESOLVED → IN_PROGRESS).",
    )
    async def reopen_incident(self, info: Info, input: IncidentStepInput) -> UpdateIncidentResult:
        return await _step(info, input, lifecycle.IncidentAction.REOPEN)

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Close the case (結案) with a reason.",
    )
    async def close_incident(self, info: Info, input: CloseIncidentInput) -> UpdateIncidentResult:
        async def run() -> IncidentUpdated:
            record = await _command(info, IncidentLifecycle).act(
                _incident_id(input.id),
                input.expected_version,
                lifecycle.IncidentAction.CLOSE,
                input.note,
                lifecycle.ClosingReason(input.reason.value),
            )
            return IncidentUpdated(incident=_returned(info, record))

        return await _typed(info, run)  # type: ignore[no-any-return]

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Dispatch a crew (派工): creates a work order.",
    )
    async def dispatch_incident(
        self, info: Info, input: DispatchIncidentInput, idempotency_key: str | None = None
    ) -> DispatchIncidentResult:
        async def run() -> IncidentDispatched:
            record, order, replayed = await _command(info, IncidentLifecycle).dispatch(
                _incident_id(input.id),
                input.expected_version,
                _work_order(input.work_order),
                input.note,
                idempotency_key,
            )
            return IncidentDispatched(
                incident=_returned(info, record),
                work_order=_returned_order(info, order),
                replayed=replayed,
            )

        return await _typed(info, run)  # type: ignore[no-any-return]

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Hand the incident to another bureau, with a reason.",
    )
    async def transfer_incident(
        self, info: Info, input: TransferIncidentInput
    ) -> TransferIncidentResult:
        async def run() -> IncidentTransferred:
            record, transfer = await _command(info, IncidentLifecycle).transfer(
                _incident_id(input.id),
                input.expected_version,
                decode_id(input.to_bureau_id, "Bureau", "input.toBureauId"),
                input.reason,
            )
            return IncidentTransferred(
                incident=_returned(info, record),
                transfer=IncidentTransfer.from_record(transfer),
            )

        return await _typed(info, run)  # type: ignore[no-any-return]

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Close the incident as a duplicate of another.",
    )
    async def mark_duplicate(self, info: Info, input: MarkDuplicateInput) -> UpdateIncidentResult:
        async def run() -> IncidentUpdated:
            record = await _command(info, IncidentLifecycle).mark_duplicate(
                _incident_id(input.id),
                input.expected_version,
                _incident_id(input.duplicate_of, "input.duplicateOf"),
                input.note,
            )
            return IncidentUpdated(incident=_returned(info, record))

        return await _typed(info, run)  # type: ignore[no-any-return]

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Let another bureau see the incident (a supervisor of the responsible bureau).",
    )
    async def share_incident(self, info: Info, input: ShareIncidentInput) -> UpdateIncidentResult:
        async def run() -> IncidentUpdated:
            record = await _command(info, IncidentSharing).share(
                _incident_id(input.id),
                input.expected_version,
                decode_id(input.bureau_id, "Bureau", "input.bureauId"),
                input.reason,
            )
            return IncidentUpdated(incident=_returned(info, record))

        return await _typed(info, run)  # type: ignore[no-any-return]

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Add a crew to an incident already dispatched.",
    )
    async def create_work_order(
        self, info: Info, input: CreateWorkOrderInput, idempotency_key: str | None = None
    ) -> CreateWorkOrderResult:
        async def run() -> WorkOrderCreated:
            order, replayed = await _command(info, WorkOrders).add(
                _incident_id(input.incident_id, "input.incidentId"),
                _work_order(input.work_order),
                idempotency_key,
            )
            return WorkOrderCreated(work_order=_returned_order(info, order), replayed=replayed)

        return await _typed(info, run)  # type: ignore[no-any-return]

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Mark one work order done.",
    )
    async def complete_work_order(
        self, info: Info, input: FinishWorkOrderInput
    ) -> FinishWorkOrderResult:
        return await _finish(info, input, WorkOrderStatus.COMPLETED)

    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["incidents:write"]],
        description="Cancel one work order.",
    )
    async def cancel_work_order(
        self, info: Info, input: FinishWorkOrderInput
    ) -> FinishWorkOrderResult:
        return await _finish(info, input, WorkOrderStatus.CANCELLED)
