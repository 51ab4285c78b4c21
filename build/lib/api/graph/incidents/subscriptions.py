"""Live incident changes over graphql-transport-ws, fed by PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from enum import Enum

import strawberry

from api.access.scope import OperationDescription
from api.graph.core.context import Info
from api.graph.core.ids import decode_ids
from api.graph.incidents.loaders import IncidentById
from api.graph.incidents.types import Incident


def _event() -> OperationDescription:
    return OperationDescription(
        category="subscription-event", name="incidentChanged", kind="subscription"
    )


@strawberry.enum
class ChangeKind(Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"


@strawberry.type
class IncidentChange:
    kind: ChangeKind
    incident: Incident


@strawberry.type
class IncidentSubscriptions:
    @strawberry.subscription(
        description=(
            "Incidents as they are created or change, in any gateway process. Each event is "
            "re-read in its own transaction, so it shows the incident as committed."
        )
    )
    async def incident_changed(
        self,
        info: Info,
        bureau: list[strawberry.ID] | None = None,
        incident: list[strawberry.ID] | None = None,
    ) -> AsyncGenerator[IncidentChange, None]:
        bureau_ids = set(decode_ids(bureau, "Bureau", "bureau") or ())
        incident_ids = set(decode_ids(incident, "Incident", "incident") or ())
        context = info.context
        async with context.resources.changes.subscribe() as notices:
            async for notice in notices:
                if bureau_ids and notice.responsible_bureau_id not in bureau_ids:
                    continue
                if incident_ids and notice.incident_id not in incident_ids:
                    continue
                # The event's fields resolve while this generator waits at `yield`, inside the
                # event's own transaction and loaders.
                async with context.event_scope(_event) as scope:
                    record = await scope.loaders.get(IncidentById).load(notice.incident_id)
                    if record is None:
                        # Not visible to this subscriber (row-level security): nothing to send.
                        scope.access.audit.silent = True
                        continue
                    kind = (
                        ChangeKind.CREATED if notice.operation == "INSERT" else ChangeKind.UPDATED
                    )
                    yield IncidentChange(kind=kind, incident=Incident.from_record(record))
