"""The incidents domain's part of the graph."""

from __future__ import annotations

import strawberry

from api.graph.core.bundle import DomainBundle

# The types' SQL declarations for registered documents, made as the module loads.
from api.graph.incidents import compiled as _compiled  # noqa: F401
from api.graph.incidents.frames import DetectionSubscriptions, FrameMutations, FrameQueries
from api.graph.incidents.loaders import (
    AnalysesOf,
    DetectionById,
    DetectionsInFrame,
    DetectionsOf,
    DuplicatesOf,
    EventsOf,
    FrameBySha,
    IncidentById,
    ReporterOf,
    TransfersOf,
    WorkOrderById,
    WorkOrdersOf,
)
from api.graph.incidents.mutations import IncidentMutations
from api.graph.incidents.queries import IncidentQueries
from api.graph.incidents.subscriptions import IncidentSubscriptions
from api.graph.incidents.types import Detection, Frame, Incident, WorkOrder
from api.http.frames import frame_routes


# Incidents and the evidence the vision models find for them: one subgraph.
@strawberry.type
class Queries(IncidentQueries, FrameQueries):
    pass


@strawberry.type
class Mutations(IncidentMutations, FrameMutations):
    pass


@strawberry.type
class Subscriptions(IncidentSubscriptions, DetectionSubscriptions):
    pass


bundle = DomainBundle(
    name="incidents",
    query=Queries,
    mutation=Mutations,
    subscription=Subscriptions,
    types=(Incident, WorkOrder, Frame, Detection),
    loaders=(
        IncidentById,
        DuplicatesOf,
        TransfersOf,
        WorkOrderById,
        ReporterOf,
        EventsOf,
        WorkOrdersOf,
        FrameBySha,
        AnalysesOf,
        DetectionById,
        DetectionsOf,
        DetectionsInFrame,
    ),
    routes=tuple(frame_routes()),
)
