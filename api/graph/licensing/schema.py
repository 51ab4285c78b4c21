"""The licensing domain's part of the gateway: licences in the graph, and the metered
OpenAI-compatible routes (``/v1``)."""

from __future__ import annotations

from api.graph.core.bundle import DomainBundle
from api.graph.licensing.loaders import DailyUsageOf, LicensedVersionsOf, UsageRecordsOf
from api.graph.licensing.mutations import LicensingMutations
from api.graph.licensing.queries import LicensingQueries
from api.http.openai import metering_routes
from api.http.openapi.description import described
from api.http.releases import release_routes
from api.http.statements import statement_routes

bundle = DomainBundle(
    name="licensing",
    query=LicensingQueries,
    mutation=LicensingMutations,
    loaders=(UsageRecordsOf, DailyUsageOf, LicensedVersionsOf),
    routes=(*metering_routes(), *release_routes(), *statement_routes()),
    apis=(described("v1"),),
)
