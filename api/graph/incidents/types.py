"""GraphQL types of incidents, their events, work orders and transfers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, cast

import strawberry
from strawberry import relay
from strawberry.scalars import JSON
from strawberry.types.lazy_type import LazyType

from api.domain import lifecycle
from api.domain.errors import InvalidInput
from api.domain.models import EventRecord, IncidentRecord, TransferRecord, WorkOrderRecord
from api.domain.search import (
    CANDIDATE_DAYS,
    CANDIDATE_METERS,
    CANDIDATES,
    MAX_CANDIDATE_DAYS,
    MAX_CANDIDATE_METERS,
    MAX_CANDIDATES,
    duplicate_candidates,
)
from api.graph.assets.loaders import AssetById
from api.graph.assets.types import Asset
from api.graph.bureaus.loaders import BureauById, CategoryByCode
from api.graph.bureaus.types import Bureau, IncidentCategory
from api.graph.core.context import Info
from api.graph.core.geo import Location
from api.graph.core.ids import decode_id
from api.graph.core.prefetch import (
    Children,
    prefetched,
    related,
    related_list,
    resolved_list,
)
from api.graph.incidents.loaders import (
    DetectionsOf,
    DuplicateCandidatesOf,
    DuplicatesOf,
    EventsOf,
    IncidentById,
    PermittedOf,
    ReporterOf,
    TransfersOf,
    WorkOrderById,
    WorkOrdersOf,
)
from api.repositories.vision import DetectionRecord

if TYPE_CHECKING:
    from api.graph.models.detections import Detection


# Detections are the models domain's (their own subgraph), which refers to incidents: the type
# is resolved lazily, as Strawberry resolves the field's annotation.
_DETECTION: LazyType[Any, Any] = LazyType("Detection", "api.graph.models.detections")


def _detection(record: DetectionRecord) -> Detection:
    detection: type[Detection] = _DETECTION.resolve_type()
    return detection.from_record(record)


# The domain's enums are the schema's (registered in place, so annotations use the classes).
strawberry.enum(lifecycle.IncidentStatus)
strawberry.enum(
    lifecycle.StatusClass, description="Open311 maps OPEN to open, FIXED and CLOSED to closed."
)
strawberry.enum(lifecycle.ClosingReason)
strawberry.enum(lifecycle.IncidentAction)
strawberry.enum(lifecycle.IncidentSource)
strawberry.enum(lifecycle.WorkOrderStatus)
IncidentStatus = lifecycle.IncidentStatus
StatusClass = lifecycle.StatusClass
ClosingReason = lifecycle.ClosingReason
IncidentAction = lifecycle.IncidentAction
IncidentSource = lifecycle.IncidentSource
WorkOrderStatus = lifecycle.WorkOrderStatus


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
    record: strawberry.Private[WorkOrderRecord]

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
            record=record,
        )

    bureau: Bureau | None = related(BureauById, "bureau_id", Bureau.from_record)
    incident: Incident | None = related(
        IncidentById, "incident_id", lambda record: Incident.from_record(record)
    )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[WorkOrder | None]:
        records = await WorkOrderById.of(info).load_many([int(i) for i in node_ids])
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
    record: strawberry.Private[TransferRecord]

    @classmethod
    def from_record(cls, record: TransferRecord) -> IncidentTransfer:
        return cls(
            id=strawberry.ID(str(record.id)),
            reason=record.reason,
            actor=record.actor,
            transferred_at=record.transferred_at,
            record=record,
        )

    from_bureau: Bureau | None = related(BureauById, "from_bureau_id", Bureau.from_record)
    to_bureau: Bureau | None = related(BureauById, "to_bureau_id", Bureau.from_record)


# The resolvers of Incident's computed fields (the root is an Incident).


def _overdue(root: Any) -> bool:
    return bool(root.status_class is lifecycle.StatusClass.OPEN and root.due_at < datetime.now(UTC))


def _allowed_actions(root: Any) -> list[IncidentAction]:
    return lifecycle.allowed_actions(IncidentStatus(root.record.status))


async def _permitted_actions(root: Any, info: Info) -> list[IncidentAction]:
    permitted = await PermittedOf.of(info).load((root.record.id, root.record.status))
    return list(permitted.actions)


async def _permitted_closing_reasons(root: Any, info: Info) -> list[ClosingReason]:
    permitted = await PermittedOf.of(info).load((root.record.id, root.record.status))
    return list(permitted.closing_reasons)


async def _reporter(root: Any, info: Info) -> Reporter | None:
    record = await ReporterOf.of(info).load(root.record.id)
    if record is None:
        return None
    return Reporter(
        name=record.name,
        phone=record.phone,
        email=record.email,
        personal_note=record.personal_note,
    )


async def _duplicate_candidates(
    root: Any,
    info: Info,
    radius_meters: float = CANDIDATE_METERS,
    within_days: int = CANDIDATE_DAYS,
    first: int = CANDIDATES,
) -> list[DuplicateCandidate]:
    asked = duplicate_candidates(radius_meters, within_days, first)
    found = await DuplicateCandidatesOf.of(info, asked).load(root.record.id)
    return [
        DuplicateCandidate(incident=Incident.from_record(record), distance_meters=meters)
        for record, meters in found
    ]


def _events(
    root: Any, info: Info, limit: int = EVENTS_LIMIT, order: EventOrder = EventOrder.NEWEST_FIRST
) -> Any:
    if not 1 <= limit <= MAX_EVENTS:
        raise InvalidInput("limit", f"must be between 1 and {MAX_EVENTS}")
    loader = EventsOf.of(info, limit, order is EventOrder.NEWEST_FIRST)
    return resolved_list(loader, root.record.id, IncidentEvent.from_record)


def _work_orders(root: Any, info: Info, status: list[WorkOrderStatus] | None = None) -> Any:
    statuses = tuple(sorted(s.value for s in (status or list(WorkOrderStatus))))
    return resolved_list(WorkOrdersOf.of(info, statuses), root.record.id, WorkOrder.from_record)


@strawberry.type(description="An incident one may duplicate, and how far it is.")
class DuplicateCandidate:
    incident: Incident
    distance_meters: float


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

    overdue: bool = strawberry.field(
        resolver=_overdue, description="Past its due date and not yet fixed or closed."
    )
    allowed_actions: list[IncidentAction] = strawberry.field(
        resolver=_allowed_actions,
        description="What can be done to the incident now (the state machine).",
    )
    permitted_actions: list[IncidentAction] = strawberry.field(
        resolver=_permitted_actions,
        description="What you may do to the incident now: of allowedActions, those the "
        "policies let you take on it (show these as buttons; each is decided again when taken).",
    )
    permitted_closing_reasons: list[ClosingReason] = strawberry.field(
        resolver=_permitted_closing_reasons,
        description="The reasons you may close the incident with now (empty when you may not "
        "close it).",
    )

    # Nested fields resolve at once when the page prefetched them (see api.graph.core.prefetch),
    # and load through the scope's DataLoaders otherwise.

    category: IncidentCategory | None = related(
        CategoryByCode, "category", IncidentCategory.from_record
    )
    responsible_bureau: Bureau | None = related(
        BureauById,
        "responsible_bureau_id",
        Bureau.from_record,
        description="The bureau that must act on the incident now.",
    )
    reporting_bureau: Bureau | None = related(
        BureauById,
        "reporting_bureau_id",
        Bureau.from_record,
        description="The bureau whose staff or camera raised the incident.",
    )
    asset: Asset | None = related(
        AssetById,
        "asset_id",
        Asset.from_record,
        description="The asset the incident concerns, if any.",
        field=strawberry.federation.field,
        requires_scopes=[["assets:read"]],
    )
    reporter: Reporter | None = strawberry.federation.field(
        resolver=_reporter,
        description=(
            "Who reported it (personal data): shown only to the responsible bureau's staff "
            "with pii:read; elsewhere null, with a PERSONAL_DATA_MASKED error on this field."
        ),
        policy=[["ViewPersonalData"]],
        requires_scopes=[["pii:read"]],
    )
    events: list[IncidentEvent] = strawberry.field(
        resolver=_events,
        description="The history, newest first by default (at most 100 entries).",
        metadata=prefetched(Children(EventsOf, lambda arguments: _events_arguments(arguments))),
    )
    work_orders: list[WorkOrder] = strawberry.field(
        resolver=_work_orders,
        description="Work orders, optionally only those in the given statuses.",
        metadata=prefetched(
            Children(WorkOrdersOf, lambda arguments: _work_order_arguments(arguments))
        ),
    )
    transfers: list[IncidentTransfer] = related_list(TransfersOf, IncidentTransfer.from_record)
    duplicate_of: Incident | None = related(
        IncidentById,
        "duplicate_of_id",
        lambda record: Incident.from_record(record),
        description="The incident this one duplicates, when closed as DUPLICATE.",
    )
    duplicates: list[Incident] = related_list(
        DuplicatesOf,
        lambda record: Incident.from_record(record),
        description="Incidents closed as duplicates of this one.",
    )
    duplicate_candidates: list[DuplicateCandidate] = strawberry.field(
        resolver=_duplicate_candidates,
        description="Incidents this one may duplicate (what markDuplicate's picker offers): "
        "those you see of the same category, not themselves duplicates, reported within "
        f"withinDays of it (default {CANDIDATE_DAYS}, at most {MAX_CANDIDATE_DAYS}) and within "
        f"radiusMeters (default {CANDIDATE_METERS:g}, at most {MAX_CANDIDATE_METERS:g}), the "
        f"first nearest (default {CANDIDATES}, at most {MAX_CANDIDATES}).",
    )

    detections: list[Annotated[Detection, strawberry.lazy("api.graph.models.detections")]] = (
        related_list(
            DetectionsOf,
            lambda record: _detection(record),
            description="What the vision model found that opened this incident or joined it "
            "as evidence, oldest first.",
        )
    )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Incident | None]:
        records = await IncidentById.of(info).load_many([int(i) for i in node_ids])
        return [cls.from_record(r) if r else None for r in records]

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> Incident | None:
        return await load_incident(info, decode_id(str(representation["id"]), "Incident", "id"))


async def load_incident(info: Info, incident_id: int | None) -> Incident | None:
    """An incident the caller may see (the row policy decides which), or None."""
    if incident_id is None:
        return None
    record = await IncidentById.of(info).load(incident_id)
    return Incident.from_record(record) if record else None


@strawberry.type
class IncidentConnection(relay.Connection[Incident]):
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many incidents match the filter (one extra query).")
    async def total_count(self) -> int:
        return await self.count()


def _events_arguments(arguments: Mapping[str, Any]) -> tuple[Hashable, ...] | None:
    """The events loader's arguments for a field's raw arguments (literals arrive as text,
    variables as numbers); None when they are not valid (the field reports it itself)."""
    try:
        limit = int(arguments.get("limit", EVENTS_LIMIT))
    except (TypeError, ValueError):
        return None
    if not 1 <= limit <= MAX_EVENTS:
        return None
    order = arguments.get("order", EventOrder.NEWEST_FIRST.value)
    return limit, order == EventOrder.NEWEST_FIRST.value


def _work_order_arguments(arguments: Mapping[str, Any]) -> tuple[Hashable, ...]:
    statuses = arguments.get("status") or [s.value for s in WorkOrderStatus]
    return (tuple(sorted(str(s) for s in statuses)),)
