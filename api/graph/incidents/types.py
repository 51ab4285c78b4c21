"""GraphQL types of incidents, their events, work orders and transfers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, cast

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from api.domain import lifecycle
from api.domain.errors import InvalidInput
from api.domain.models import EventRecord, IncidentRecord, TransferRecord, WorkOrderRecord
from api.graph.assets.types import Asset, load_asset
from api.graph.bureaus.types import Bureau, IncidentCategory, load_bureau
from api.graph.context import Info
from api.graph.geo import Location
from api.graph.ids import decode_id

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


@strawberry.federation.type(keys=["id"], description="A crew's assignment to work on an incident.")
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
    async def bureau(self, info: Info) -> Bureau | None:
        return await load_bureau(info, self.bureau_id)

    @strawberry.field
    async def incident(self, info: Info) -> Incident | None:
        return await load_incident(info, self.incident_id)

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[WorkOrder | None]:
        loader = info.context.loaders.incidents.work_order
        records = await loader.load_many([int(i) for i in node_ids])
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
    async def from_bureau(self, info: Info) -> Bureau | None:
        return await load_bureau(info, self.from_bureau_id)

    @strawberry.field
    async def to_bureau(self, info: Info) -> Bureau | None:
        return await load_bureau(info, self.to_bureau_id)


@strawberry.federation.type(
    keys=["id"], description="A problem in the city, from discovery to closing."
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

    @strawberry.field
    async def category(self, info: Info) -> IncidentCategory | None:
        record = await info.context.loaders.bureaus.category.load(self.record.category)
        return IncidentCategory.from_record(record) if record else None

    @strawberry.field(description="The bureau that must act on the incident now.")
    async def responsible_bureau(self, info: Info) -> Bureau | None:
        return await load_bureau(info, self.record.responsible_bureau_id)

    @strawberry.field(description="The bureau whose staff or camera raised the incident.")
    async def reporting_bureau(self, info: Info) -> Bureau | None:
        return await load_bureau(info, self.record.reporting_bureau_id)

    @strawberry.field(description="The asset the incident concerns, if any.")
    async def asset(self, info: Info) -> Asset | None:
        return await load_asset(info, self.record.asset_id)

    @strawberry.field(description="Who reported it (personal data).")
    def reporter(self) -> Reporter | None:
        record = self.record
        if (
            record.reporter_name is None
            and record.reporter_phone is None
            and record.reporter_email is None
        ):
            return None
        return Reporter(
            name=record.reporter_name, phone=record.reporter_phone, email=record.reporter_email
        )

    @strawberry.field(description="The history, newest first by default (at most 100 entries).")
    async def events(
        self, info: Info, limit: int = 20, order: EventOrder = EventOrder.NEWEST_FIRST
    ) -> list[IncidentEvent]:
        if not 1 <= limit <= MAX_EVENTS:
            raise InvalidInput("limit", f"must be between 1 and {MAX_EVENTS}")
        loader = info.context.loaders.incidents.events(limit, order is EventOrder.NEWEST_FIRST)
        return [IncidentEvent.from_record(r) for r in await loader.load(self.record.id)]

    @strawberry.field(description="Work orders, optionally only those in the given statuses.")
    async def work_orders(
        self, info: Info, status: list[WorkOrderStatus] | None = None
    ) -> list[WorkOrder]:
        statuses = [s.value for s in (status or list(WorkOrderStatus))]
        loader = info.context.loaders.incidents.work_orders(statuses)
        return [WorkOrder.from_record(r) for r in await loader.load(self.record.id)]

    @strawberry.field
    async def transfers(self, info: Info) -> list[IncidentTransfer]:
        records = await info.context.loaders.incidents.transfers.load(self.record.id)
        return [IncidentTransfer.from_record(r) for r in records]

    @strawberry.field(description="The incident this one duplicates, when closed as DUPLICATE.")
    async def duplicate_of(self, info: Info) -> Incident | None:
        return await load_incident(info, self.record.duplicate_of_id)

    @strawberry.field(description="Incidents closed as duplicates of this one.")
    async def duplicates(self, info: Info) -> list[Incident]:
        records = await info.context.loaders.incidents.duplicates.load(self.record.id)
        return [Incident.from_record(r) for r in records]

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Incident | None]:
        records = await info.context.loaders.incidents.by_id.load_many([int(i) for i in node_ids])
        return [cls.from_record(r) if r else None for r in records]

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> Incident | None:
        return await load_incident(info, decode_id(str(representation["id"]), "Incident", "id"))


async def load_incident(info: Info, incident_id: int | None) -> Incident | None:
    if incident_id is None:
        return None
    record = await info.context.loaders.incidents.by_id.load(incident_id)
    return Incident.from_record(record) if record else None


@strawberry.type
class IncidentConnection(relay.Connection[Incident]):
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many incidents match the filter (one extra query).")
    async def total_count(self) -> int:
        return await self.count()
