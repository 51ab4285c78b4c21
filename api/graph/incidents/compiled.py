"""How the incident types compile to SQL for registered documents (see
``api.graph.core.compiled``): their columns and relations, and the arguments of their lists.
The SQL of the computed columns and of the lists is the incidents repository's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.domain.lifecycle import WorkOrderStatus
from api.graph.core.compiled import (
    Bind,
    Column,
    Composite,
    NotCompiled,
    ToMany,
    ToOne,
    checked,
    compiled,
    literal,
    statuses_argument,
)
from api.graph.core.geo import LOCATION_COLUMNS
from api.graph.incidents.types import (
    EVENTS_LIMIT,
    MAX_EVENTS,
    Incident,
    IncidentEvent,
    IncidentTransfer,
    WorkOrder,
)
from api.policy import resources
from api.repositories.incidents import (
    CASE_NUMBER_SQL,
    EVENT_ID_SQL,
    STATUS_CLASS_SQL,
    TRANSFER_ID_SQL,
    events_rows,
    transfers_rows,
    work_orders_rows,
)
from api.repositories.json_sql import ChildRows, Format


def _compiled_events(arguments: Mapping[str, Any], bind: Bind) -> ChildRows:
    if set(arguments) - {"limit", "order"}:
        raise NotCompiled("Incident.events has arguments the planner does not know")

    def in_range(limit: object) -> int:
        if not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS:
            raise NotCompiled("Incident.events(limit) out of range: the resolver path answers")
        return limit

    limit = checked(arguments.get("limit", EVENTS_LIMIT), in_range)
    order = literal(arguments.get("order", "NEWEST_FIRST"), "Incident.events(order)")
    return events_rows(bind(limit, "int"), newest_first=order == "NEWEST_FIRST")


def _compiled_work_orders(arguments: Mapping[str, Any], bind: Bind) -> ChildRows:
    if set(arguments) - {"status"}:
        raise NotCompiled("Incident.workOrders has arguments the planner does not know")
    everything = [s.value for s in WorkOrderStatus]
    statuses = checked(arguments.get("status"), lambda v: statuses_argument(v, everything))
    return work_orders_rows(bind(statuses, "text[]"))


compiled(
    IncidentEvent,
    "incident_event",
    id=Column(EVENT_ID_SQL),
    kind=Column("kind"),
    from_status=Column("from_status"),
    to_status=Column("to_status"),
    actor=Column("actor"),
    note=Column("note"),
    data=Column("data"),
    occurred_at=Column("occurred_at", Format.TIMESTAMP),
)


def _compiled_transfers(arguments: Mapping[str, Any], bind: Bind) -> ChildRows:
    if arguments:
        raise NotCompiled("Incident.transfers takes no arguments")
    return transfers_rows()


compiled(
    IncidentTransfer,
    "incident_transfer",
    id=Column(TRANSFER_ID_SQL),
    reason=Column("reason"),
    actor=Column("actor"),
    transferred_at=Column("transferred_at", Format.TIMESTAMP),
    from_bureau=ToOne("from_bureau_id"),
    to_bureau=ToOne("to_bureau_id"),
)
compiled(
    WorkOrder,
    "work_order",
    id=Column("id", Format.GLOBAL_ID),
    status=Column("status"),
    crew=Column("crew"),
    instructions=Column("instructions"),
    due_at=Column("due_at", Format.TIMESTAMP),
    created_at=Column("created_at", Format.TIMESTAMP),
    created_by=Column("created_by"),
    finished_at=Column("finished_at", Format.TIMESTAMP),
    bureau=ToOne("bureau_id"),
)
compiled(
    Incident,
    "incident",
    id=Column("id", Format.GLOBAL_ID),
    case_number=Column(CASE_NUMBER_SQL),
    title=Column("title"),
    description=Column("description"),
    status=Column("status"),
    status_class=Column(STATUS_CLASS_SQL),
    closing_reason=Column("closing_reason"),
    source=Column("source"),
    location=Composite(LOCATION_COLUMNS),
    reported_at=Column("reported_at", Format.TIMESTAMP),
    due_at=Column("due_at", Format.TIMESTAMP),
    closed_at=Column("closed_at", Format.TIMESTAMP),
    updated_at=Column("updated_at", Format.TIMESTAMP),
    version=Column("version"),
    category=ToOne("category", target_key="code"),
    responsible_bureau=ToOne("responsible_bureau_id"),
    reporting_bureau=ToOne("reporting_bureau_id"),
    asset=ToOne("asset_id", guarded=("ListAssets", resources.ASSETS)),
    events=ToMany(_compiled_events),
    work_orders=ToMany(_compiled_work_orders),
    transfers=ToMany(_compiled_transfers),
)
