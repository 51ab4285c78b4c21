"""Live incident changes over graphql-transport-ws, fed by PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from enum import Enum

import strawberry

from api.access.scope import OperationDescription
from api.domain.errors import Unauthenticated
from api.graph.core.context import Info
from api.graph.core.ids import decode_ids
from api.graph.incidents.loaders import IncidentById
from api.graph.incidents.types import Incident
from api.policy import resources


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
        principal = context.principal
        policy = context.resources.policy
        subscriber = resources.principal_entity(principal)
        async with context.resources.changes.subscribe() as notices:
            async for notice in notices:
                if bureau_ids and notice.responsible_bureau_id not in bureau_ids:
                    continue
                if incident_ids and notice.incident_id not in incident_ids:
                    continue
                if principal.expires_at is not None and principal.expires_at < time.time():
                    raise Unauthenticated("the access token has expired; reconnect with a new one")
                # A change the subscriber may not see is passed over here, on the facts the
                # notice carries, without a transaction; one it may see is read under row-level
                # security in a transaction of its own, which still decides.
                if notice.facts is not None and not policy.decide(
                    subscriber, "ViewIncident", resources.incident_entity(notice.facts),
                    principal.scopes,
                ).allowed:  # fmt: skip
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
