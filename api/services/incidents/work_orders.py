"""Work orders: the crews dispatched to an incident, added and finished one by one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from api.domain import lifecycle
from api.domain.errors import InvalidInput, NotFound, TransitionRejected
from api.domain.lifecycle import ACTIVE_WORK_ORDERS, IncidentStatus, WorkOrderStatus
from api.domain.models import IncidentRecord, WorkOrderRecord
from api.repositories.incidents import NewWorkOrder
from api.services.idempotency import once
from api.services.incidents.common import IncidentCommand, payload, text

S = IncidentStatus


@dataclass(frozen=True, slots=True)
class WorkOrderSpec:
    crew: str
    instructions: str = ""
    due_at: datetime | None = None


def new_work_order(order: WorkOrderSpec, incident: IncidentRecord) -> NewWorkOrder:
    """A checked work order for ``incident``; due when the incident is, unless said otherwise."""
    crew = text("workOrder.crew", order.crew, required=True, limit=200)
    instructions = text("workOrder.instructions", order.instructions, required=False, limit=4000)
    if order.due_at is not None and order.due_at.tzinfo is None:
        raise InvalidInput("workOrder.dueAt", "must include a time zone offset")
    return NewWorkOrder(crew, instructions, order.due_at or incident.due_at)


class WorkOrders(IncidentCommand):
    async def add(
        self, incident_id: int, order: WorkOrderSpec, idempotency_key: str | None
    ) -> tuple[WorkOrderRecord, bool]:
        """Another crew for an incident already dispatched or in progress."""

        async def create() -> tuple[WorkOrderRecord, int]:
            incident = await self.incidents.get(incident_id)
            await self._require("ManageWorkOrders", incident.id)
            if incident.status not in (S.DISPATCHED, S.IN_PROGRESS):
                raise TransitionRejected(
                    incident.status,
                    "add a work order to",
                    [a.value for a in lifecycle.allowed_actions(IncidentStatus(incident.status))],
                    "work orders are added to DISPATCHED or IN_PROGRESS incidents",
                )
            work_order = await self.incidents.create_work_order(
                incident.id,
                incident.responsible_bureau_id,
                new_work_order(order, incident),
                self._actor,
            )
            await self.incidents.append_event(
                incident.id,
                "WORK_ORDER_CREATED",
                incident.status,
                self._actor,
                "",
                {"work_order": work_order.id},
            )
            return work_order, work_order.id

        async def replay(work_order_id: int) -> WorkOrderRecord:
            return (await self.incidents.work_orders_by_ids([work_order_id]))[work_order_id]

        async with self._uow.savepoint():
            return await once(
                self._keys,
                subject=self._actor,
                key=idempotency_key,
                operation="createWorkOrder",
                payload={"incident": incident_id, **payload(order)},
                create=create,
                replay=replay,
            )

    async def finish(
        self, work_order_id: int, outcome: WorkOrderStatus, note: str
    ) -> WorkOrderRecord:
        """Complete or cancel one work order; the incident's own status is not changed."""
        if outcome not in (WorkOrderStatus.COMPLETED, WorkOrderStatus.CANCELLED):
            raise ValueError(outcome)
        self._access.audit.targeted("WorkOrder", work_order_id)
        async with self._uow.savepoint():
            existing = (await self.incidents.work_orders_by_ids([work_order_id])).get(work_order_id)
            if existing is None:
                raise NotFound("work order", work_order_id)
            await self._require("ManageWorkOrders", existing.incident_id)
            finished = await self.incidents.finish_work_order(
                work_order_id, ACTIVE_WORK_ORDERS, outcome
            )
            if finished is None:
                raise InvalidInput("id", f"work order {work_order_id} is already {existing.status}")
            incident = await self.incidents.get(finished.incident_id)
            await self.incidents.append_event(
                incident.id,
                f"WORK_ORDER_{outcome.value}",
                incident.status,
                self._actor,
                text("note", note, required=False, limit=4000),
                {"work_order": work_order_id},
            )
            return finished
