"""The incidents domain's part of the graph."""

from __future__ import annotations

from api.graph.core.bundle import DomainBundle

# The types' SQL declarations for registered documents, made as the module loads.
from api.graph.incidents import compiled as _compiled  # noqa: F401
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
from api.graph.incidents.mutations import IncidentMutations
from api.graph.incidents.queries import IncidentQueries
from api.graph.incidents.subscriptions import IncidentSubscriptions
from api.graph.incidents.types import Incident, WorkOrder
from api.http.open311.routes import open311_routes
from api.http.openapi.description import described

bundle = DomainBundle(
    name="incidents",
    query=IncidentQueries,
    mutation=IncidentMutations,
    subscription=IncidentSubscriptions,
    types=(Incident, WorkOrder),
    loaders=(
        IncidentById,
        DuplicatesOf,
        TransfersOf,
        WorkOrderById,
        ReporterOf,
        EventsOf,
        WorkOrdersOf,
        DetectionsOf,
        PermittedOf,
        DuplicateCandidatesOf,
    ),
    # Open311 GeoReport v2: service requests are incidents.
    routes=tuple(open311_routes()),
    apis=(described("open311"),),
)
