"""GraphQL types of incidents, their events, work orders and transfers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any, cast

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from api.domain import lifecycle
from api.domain.errors import InvalidInput, PersonalDataMasked
from api.domain.models import EventRecord, IncidentRecord, TransferRecord, WorkOrderRecord
from api.graph.assets.types import Asset
from api.graph.bureaus.types import Bureau, IncidentCategory
from api.graph.context import Info, Loaders
from api.graph.geo import Location
from api.graph.ids import decode_id
from api.graph.prefetch import children, prefetcher, preload, reference, resolved, resolved_list
from api.policy import resources

# The domain's enums are the schema's (registered in place, so annotations use the classes).
strawberry.enum(lifecycle.IncidentStatus)
strawberry.enum(
    lifecycle.StatusClass, description="Open311 maps OPEN to open, FIXED and CLOSED to closed."
)
strawberry.enum(lifecycle.ClosingReason)
strawberry.enum(lifecycle.IncidentAction)
IncidentStatus = lifecycle.IncidentStatus
StatusClass = lifecycle.StatusClass
ClosingReason = lifecycle.ClosingReason
IncidentAction = lifecycle.IncidentAction


@strawberry.enum
class IncidentSource(Enum):
    VLM = "VLM"
    CITIZEN_1999 = "CITIZEN_1999"
    STAFF = "STAFF"
    SENSOR = "SENSOR"


@strawberry.enum
class WorkOrderStatus(Enum):
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


@strawberry.enum
class EventOrder(Enum):
    NEWEST_FIRST = "NEWEST_FIRST"
    OLDEST_FIRST = "OLDEST_FIRST"


MAX_EVENTS = 100
EVENTS_LIMIT = 20


@strawberry.type(description="One entry of an incident's append-only history.")
class IncidentEvent:
    id: strawberry.ID
    kind: str
    from_status: IncidentStatus | None
    to_status: IncidentStatus | None
    actor: str
    note: str
    data: JSON
    occurred_at: datetime

    @classmethod
    def from_record(cls, record: EventRecord) -> IncidentEvent:
        return cls(
            id=strawberry.ID(str(record.id)),
            kind=record.kind,
            from_status=lifecycle.IncidentStatus(record.from_status)
            if record.from_status
            else None,
            to_status=lifecycle.IncidentStatus(record.to_status) if record.to_status else None,
            actor=record.actor,
            note=record.note,
            data=cast(JSON, record.data),
            occurred_at=record.occurred_at,
        )


@strawberry.type(description="The person who reported an incident (personal data).")
class Reporter:
    name: str | None
    phone: str | None
    email: str | None
    personal_note: str | None = strawberry.field(
        description="Free text from the reporter that may identify people."
    )


@strawberry.federation.type(
    keys=["id"], authenticated=True, description="A crew's assignment to work on an incident."
)
class WorkOrder(relay.Node):
    id: relay.NodeID[int]
    status: WorkOrderStatus
    crew: str
    instructions: str
    due_at: datetime | None
    created_at: datetime
    created_by: str
    finished_at: datetime | None
    incident_id: strawberry.Private[int]
    bureau_id: strawberry.Private[int]

    @classmethod
    def from_record(cls, record: WorkOrderRecord) -> WorkOrder:
        return cls(
            id=record.id,
            status=WorkOrderStatus(record.status),
            crew=record.crew,
            instructions=record.instructions,
            due_at=record.due_at,
            created_at=record.created_at,
            created_by=record.created_by,
            finished_at=record.finished_at,
            incident_id=record.incident_id,
            bureau_id=record.bureau_id,
        )

    @strawberry.field
    def bureau(self, info: Info) -> Bureau | None:
        return resolved(info.context.loaders.bureaus.by_id, self.bureau_id, Bureau.from_record)  # type: ignore[return-value]

    @strawberry.field
    def incident(self, info: Info) -> Incident | None:
        return resolved(
            info.context.loaders.incidents.by_id, self.incident_id, Incident.from_record
        )  # type: ignore[return-value]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[WorkOrder | None]:
        info.context.authorize("ListIncidents", resources.INCIDENTS)
        loader = info.context.loaders.incidents.work_order
        records = await preload(loader, [int(i) for i in node_ids])
        return [cls.from_record(r) if r else None for r in records]

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> WorkOrder | None:
        node_id = decode_id(str(representation["id"]), "WorkOrder", "id")
        return (await cls.resolve_nodes(info=info, node_ids=[str(node_id)]))[0]


@strawberry.type(description="A hand-over of an incident from one bureau to another.")
class IncidentTransfer:
    id: strawberry.ID
    reason: str
    actor: str
    transferred_at: datetime
    from_bureau_id: strawberry.Private[int]
    to_bureau_id: strawberry.Private[int]

    @classmethod
    def from_record(cls, record: TransferRecord) -> IncidentTransfer:
        return cls(
            id=strawberry.ID(str(record.id)),
            reason=record.reason,
            actor=record.actor,
            transferred_at=record.transferred_at,
            from_bureau_id=record.from_bureau_id,
            to_bureau_id=record.to_bureau_id,
        )

    @strawberry.field
    def from_bureau(self, info: Info) -> Bureau | None:
        return resolved(info.context.loaders.bureaus.by_id, self.from_bureau_id, Bureau.from_record)  # type: ignore[return-value]

    @strawberry.field
    def to_bureau(self, info: Info) -> Bureau | None:
        return resolved(info.context.loaders.bureaus.by_id, self.to_bureau_id, Bureau.from_record)  # type: ignore[return-value]


@strawberry.federation.type(
    keys=["id"], authenticated=True, description="A problem in the city, from discovery to closing."
)
class Incident(relay.Node):
    id: relay.NodeID[int]
    case_number: str = strawberry.field(description="The case number citizens and staff quote.")
    title: str
    description: str
    status: IncidentStatus
    status_class: StatusClass
    closing_reason: ClosingReason | None
    source: IncidentSource
    location: Location
    reported_at: datetime
    due_at: datetime = strawberry.field(description="When the service level says it must be fixed.")
    closed_at: datetime | None
    updated_at: datetime
    version: int = strawberry.field(
        description="Send this back as expectedVersion when you change the incident."
    )
    record: strawberry.Private[IncidentRecord]

    @classmethod
    def from_record(cls, record: IncidentRecord) -> Incident:
        status = lifecycle.IncidentStatus(record.status)
        return cls(
            id=record.id,
            case_number=record.case_number,
            title=record.title,
            description=record.description,
            status=status,
            status_class=lifecycle.STATUS_CLASS[status],
            closing_reason=(
                lifecycle.ClosingReason(record.closing_reason) if record.closing_reason else None
            ),
            source=IncidentSource(record.source),
            location=Location(latitude=record.latitude, longitude=record.longitude),
            reported_at=record.reported_at,
            due_at=record.due_at,
            closed_at=record.closed_at,
            updated_at=record.updated_at,
            version=record.version,
            record=record,
        )

    @strawberry.field(description="Past its due date and not yet fixed or closed.")
    def overdue(self) -> bool:
        return self.status_class is lifecycle.StatusClass.OPEN and self.due_at < datetime.now(UTC)

    @strawberry.field(description="What can be done to the incident now (the state machine).")
    def allowed_actions(self) -> list[IncidentAction]:
        return lifecycle.allowed_actions(lifecycle.IncidentStatus(self.record.status))

    # Nested fields resolve at once when the page prefetched them (see api.graph.prefetch),
    # and load through the request's DataLoaders otherwise.

    @strawberry.field
    def category(self, info: Info) -> IncidentCategory | None:
        loader = info.context.loaders.bureaus.category
        return resolved(loader, self.record.category, IncidentCategory.from_record)  # type: ignore[return-value]

    @strawberry.field(description="The bureau that must act on the incident now.")
    def responsible_bureau(self, info: Info) -> Bureau | None:
        loader = info.context.loaders.bureaus.by_id
        return resolved(loader, self.record.responsible_bureau_id, Bureau.from_record)  # type: ignore[return-value]

    @strawberry.field(description="The bureau whose staff or camera raised the incident.")
    def reporting_bureau(self, info: Info) -> Bureau | None:
        loader = info.context.loaders.bureaus.by_id
        return resolved(loader, self.record.reporting_bureau_id, Bureau.from_record)  # type: ignore[return-value]

    @strawberry.federation.field(
        description="The asset the incident concerns, if any.", requires_scopes=[["assets:read"]]
    )
    def asset(self, info: Info) -> Asset | None:
        if self.record.asset_id is None:
            return None
        info.context.authorize("ListAssets", resources.ASSETS)
        loader = info.context.loaders.assets.by_id
        return resolved(loader, self.record.asset_id, Asset.from_record)  # type: ignore[return-value]

    @strawberry.federation.field(
        description=(
            "Who reported it (personal data): shown only to the responsible bureau's staff "
            "with pii:read; elsewhere null, with a PERSONAL_DATA_MASKED error on this field."
        ),
        policy=[["ViewPersonalData"]],
        requires_scopes=[["pii:read"]],
    )
    async def reporter(self, info: Info) -> Reporter | None:
        context = info.context
        facts = await context.loaders.incidents.facts.load(self.record.id)
        if facts is None:
            return None
        decision = context.authorizer.decide("ViewPersonalData", resources.incident_entity(facts))
        if not decision.allowed:
            raise PersonalDataMasked()
        record = await context.loaders.incidents.reporter.load(self.record.id)
        if record is None:
            return None
        context.audit.saw_personal_data("Incident", self.record.id)
        return Reporter(
            name=record.name,
            phone=record.phone,
            email=record.email,
            personal_note=record.personal_note,
        )

    @strawberry.field(description="The history, newest first by default (at most 100 entries).")
    def events(
        self, info: Info, limit: int = EVENTS_LIMIT, order: EventOrder = EventOrder.NEWEST_FIRST
    ) -> list[IncidentEvent]:
        if not 1 <= limit <= MAX_EVENTS:
            raise InvalidInput("limit", f"must be between 1 and {MAX_EVENTS}")
        loader = info.context.loaders.incidents.events(limit, order is EventOrder.NEWEST_FIRST)
        return resolved_list(loader, self.record.id, IncidentEvent.from_record)  # type: ignore[return-value]

    @strawberry.field(description="Work orders, optionally only those in the given statuses.")
    def work_orders(
        self, info: Info, status: list[WorkOrderStatus] | None = None
    ) -> list[WorkOrder]:
        statuses = [s.value for s in (status or list(WorkOrderStatus))]
        loader = info.context.loaders.incidents.work_orders(statuses)
        return resolved_list(loader, self.record.id, WorkOrder.from_record)  # type: ignore[return-value]

    @strawberry.field
    def transfers(self, info: Info) -> list[IncidentTransfer]:
        loader = info.context.loaders.incidents.transfers
        return resolved_list(loader, self.record.id, IncidentTransfer.from_record)  # type: ignore[return-value]

    @strawberry.field(description="The incident this one duplicates, when closed as DUPLICATE.")
    def duplicate_of(self, info: Info) -> Incident | None:
        loader = info.context.loaders.incidents.by_id
        return resolved(loader, self.record.duplicate_of_id, _seen(info))  # type: ignore[return-value]

    @strawberry.field(description="Incidents closed as duplicates of this one.")
    def duplicates(self, info: Info) -> list[Incident]:
        loader = info.context.loaders.incidents.duplicates
        return resolved_list(loader, self.record.id, _seen(info))  # type: ignore[return-value]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Incident | None]:
        info.context.authorize("ListIncidents", resources.INCIDENTS)
        records = await info.context.loaders.incidents.by_id.load_many([int(i) for i in node_ids])
        return [_seen(info)(r) if r else None for r in records]

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> Incident | None:
        return await load_incident(info, decode_id(str(representation["id"]), "Incident", "id"))


def _seen(info: Info) -> Callable[[IncidentRecord], Incident]:
    """Converts records to the schema's type, noting each one returned in the audit record."""
    audit = info.context.audit

    def convert(record: IncidentRecord) -> Incident:
        audit.saw("Incident", record.id)
        return Incident.from_record(record)

    return convert


async def load_incident(info: Info, incident_id: int | None) -> Incident | None:
    """An incident the caller may see (the row policy decides which), or None."""
    if incident_id is None:
        return None
    info.context.authorize("ListIncidents", resources.INCIDENTS)
    record = await info.context.loaders.incidents.by_id.load(incident_id)
    return _seen(info)(record) if record else None


@strawberry.type
class IncidentConnection(relay.Connection[Incident]):
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many incidents match the filter (one extra query).")
    async def total_count(self) -> int:
        return await self.count()


# --- how the nested fields above load for a whole page (api.graph.prefetch) ------------------

reference(
    "Incident", "responsibleBureau", "Bureau", lambda x: x.bureaus.by_id, "responsible_bureau_id"
)
reference("Incident", "reportingBureau", "Bureau", lambda x: x.bureaus.by_id, "reporting_bureau_id")
reference("Incident", "asset", "Asset", lambda x: x.assets.by_id, "asset_id")
reference("Incident", "category", "IncidentCategory", lambda x: x.bureaus.category, "category")
reference("Incident", "duplicateOf", "Incident", lambda x: x.incidents.by_id, "duplicate_of_id")
children("Incident", "transfers", "IncidentTransfer", lambda x: x.incidents.transfers)
children("Incident", "duplicates", "Incident", lambda x: x.incidents.duplicates)
reference("WorkOrder", "bureau", "Bureau", lambda x: x.bureaus.by_id, "bureau_id")
reference("IncidentTransfer", "fromBureau", "Bureau", lambda x: x.bureaus.by_id, "from_bureau_id")
reference("IncidentTransfer", "toBureau", "Bureau", lambda x: x.bureaus.by_id, "to_bureau_id")


@prefetcher("Incident", "events")
async def _events(
    loaders: Loaders, parents: Sequence[Any], arguments: Mapping[str, Any]
) -> tuple[str, list[Any]]:
    try:  # literals arrive as text, variables as numbers
        limit = int(arguments.get("limit", EVENTS_LIMIT))
    except (TypeError, ValueError):
        return "IncidentEvent", []
    if not 1 <= limit <= MAX_EVENTS:
        return "IncidentEvent", []  # the field reports the bad argument itself
    newest_first = (
        arguments.get("order", EventOrder.NEWEST_FIRST.value) == EventOrder.NEWEST_FIRST.value
    )
    await preload(loaders.incidents.events(limit, newest_first), [p.id for p in parents])
    return "IncidentEvent", []


@prefetcher("Incident", "workOrders")
async def _work_orders(
    loaders: Loaders, parents: Sequence[Any], arguments: Mapping[str, Any]
) -> tuple[str, list[Any]]:
    statuses = arguments.get("status") or [s.value for s in WorkOrderStatus]
    loader = loaders.incidents.work_orders([str(s) for s in statuses])
    found = await preload(loader, [p.id for p in parents])
    return "WorkOrder", [record for records in found for record in records]
