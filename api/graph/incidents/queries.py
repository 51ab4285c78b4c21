"""Queries over incidents."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import cast

import strawberry

from api.domain import lifecycle
from api.domain.errors import InvalidInput
from api.domain.search import MAX_SEARCH_LENGTH, MAX_SEARCH_WORDS, incident_search
from api.graph.core.compiled import SQL, NotCompiled, RootById, RootConnection
from api.graph.core.connections import build_connection
from api.graph.core.context import Info
from api.graph.core.geo import BoundingBoxInput, NearInput, to_box, to_circle
from api.graph.core.ids import decode_id, decode_ids
from api.graph.core.prefetch import PagePrefetch, node_selections
from api.graph.incidents.loaders import IncidentById, WorkOrderById
from api.graph.incidents.types import (
    Incident,
    IncidentConnection,
    IncidentStatus,
    StatusClass,
    WorkOrder,
    load_incident,
)
from api.policy import resources
from api.repositories.incidents import INCIDENT_ORDERINGS, IncidentFilter
from api.repositories.sql import page_request
from api.services.incidents.reads import IncidentReads


@strawberry.enum
class IncidentOrder(Enum):
    NEWEST_FIRST = "NEWEST_FIRST"
    OLDEST_FIRST = "OLDEST_FIRST"
    DUE_SOONEST = "DUE_SOONEST"


@strawberry.input
class IncidentFilterInput:
    status: list[IncidentStatus] | None = None
    status_class: list[StatusClass] | None = None
    category: list[str] | None = None
    bureau: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Responsible bureaus, by ID."
    )
    bureau_code: list[str] | None = strawberry.field(
        default=None, description="Responsible bureaus, by code."
    )
    asset: list[strawberry.ID] | None = None
    reported_from: datetime | None = strawberry.field(default=None, description="Inclusive.")
    reported_before: datetime | None = strawberry.field(default=None, description="Exclusive.")
    overdue: bool | None = None
    near: NearInput | None = strawberry.field(default=None, description="Within a radius.")
    within: BoundingBoxInput | None = strawberry.field(default=None, description="Inside a box.")
    search: str | None = strawberry.field(
        default=None,
        description="Words each found, in any case, in the title or the description; or a case "
        f"number (KH-00000042). At most {MAX_SEARCH_LENGTH} characters and {MAX_SEARCH_WORDS} "
        "words.",
    )


def _statuses(value: IncidentFilterInput) -> list[str] | None:
    statuses: set[str] | None = None
    if value.status is not None:
        statuses = {s.value for s in value.status}
    if value.status_class is not None:
        classes = set(value.status_class)
        in_class = {s.value for s, c in lifecycle.STATUS_CLASS.items() if c in classes}
        statuses = in_class if statuses is None else statuses & in_class
    return sorted(statuses) if statuses is not None else None


def incident_filter(value: IncidentFilterInput | None, info: Info) -> IncidentFilter:
    if value is None:
        return IncidentFilter()
    if value.near is not None and value.within is not None:
        raise InvalidInput("filter", "use near or within, not both")
    for name, moment in (
        ("reportedFrom", value.reported_from),
        ("reportedBefore", value.reported_before),
    ):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"filter.{name}", "must include a time zone offset")
    if (
        value.reported_from
        and value.reported_before
        and value.reported_from >= value.reported_before
    ):
        raise InvalidInput("filter.reportedBefore", "must be later than reportedFrom")
    search = incident_search(value.search, "filter.search") if value.search is not None else None
    return IncidentFilter(
        words=search.words if search else None,
        case_id=search.case_id if search else None,
        statuses=_statuses(value),
        categories=value.category,
        bureau_ids=decode_ids(value.bureau, "Bureau", "filter.bureau"),
        bureau_codes=value.bureau_code,
        asset_ids=decode_ids(value.asset, "Asset", "filter.asset"),
        reported_from=value.reported_from,
        reported_before=value.reported_before,
        overdue=value.overdue,
        now=datetime.now(UTC) if value.overdue is not None else None,
        near=to_circle(value.near, info, "filter.near") if value.near else None,
        within=to_box(value.within, info, "filter.within") if value.within else None,
    )


def _compiled_filter(value: IncidentFilterInput) -> IncidentFilter:
    """A literal filter as the resolvers read it; ``overdue`` (the time of the request) and
    ``near``/``within`` (a coordinate conversion) stay on the resolvers."""
    if value.overdue is not None or value.near is not None or value.within is not None:
        raise NotCompiled("filter.overdue, near and within are not compiled")
    return incident_filter(value, cast(Info, None))  # info serves near/within only


# ``incidents(first, after, orderBy, filter) { … }`` in a registered document compiles to one
# statement (see api.graph.core.compiled).
INCIDENTS_SQL = RootConnection(
    orderings=INCIDENT_ORDERINGS,
    default_order=IncidentOrder.NEWEST_FIRST.value,
    listed=("ListIncidents", resources.INCIDENTS),
    audited="Incident",
    page_size=lambda graph: (min(20, graph.max_page_size), graph.max_page_size),
    filter=_compiled_filter,
)


# ``incident(id) { … }`` compiles the same way.
INCIDENT_SQL = RootById(
    type_name="Incident",
    listed=("ListIncidents", resources.INCIDENTS),
    audited="Incident",
    decode=decode_id,
)


@strawberry.type
class IncidentQueries:
    @strawberry.federation.field(
        description="Incidents as a Relay connection, newest first by default.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
        metadata={SQL: INCIDENTS_SQL},
    )
    async def incidents(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: IncidentFilterInput | None = None,
        order_by: IncidentOrder = IncidentOrder.NEWEST_FIRST,
    ) -> IncidentConnection:
        settings = info.context.resources.settings
        ordering = INCIDENT_ORDERINGS[order_by.value]
        request = page_request(
            ordering,
            first=first,
            after=after,
            last=last,
            before=before,
            default_size=min(20, settings.graph.max_page_size),
            max_size=settings.graph.max_page_size,
        )
        where = incident_filter(filter, info)
        reads = IncidentReads(info.context.access)
        # The nested fields' reads that can go with the page go in its statement.
        nested = PagePrefetch(info, "Incident", "edges", "node")
        page = await reads.page(where, ordering, request, nested.companions)
        IncidentById.of(info).prime_many({record.id: record for record in page.items})
        await nested.finish(page.items)
        edge_fields = {field.name for field in node_selections(info, "edges")}
        return build_connection(
            IncidentConnection,
            page,
            ordering,
            Incident.from_record,
            lambda: reads.count(where),
            edge_cursors="cursor" in edge_fields,
        )

    @strawberry.federation.field(
        description="One incident by its ID; null if it does not exist (or you may not see it).",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
        metadata={SQL: INCIDENT_SQL},
    )
    async def incident(self, info: Info, id: strawberry.ID) -> Incident | None:
        return await load_incident(info, decode_id(id, "Incident", "id"))

    @strawberry.federation.field(
        description="One work order by its ID; null if it does not exist (or you may not see it).",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def work_order(self, info: Info, id: strawberry.ID) -> WorkOrder | None:
        record = await WorkOrderById.of(info).load(decode_id(id, "WorkOrder", "id"))
        return WorkOrder.from_record(record) if record else None
