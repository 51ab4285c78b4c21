"""Moving incidents through the state machine: verify, dispatch (派工), work, close (結案),
transfer between bureaus and close as a duplicate.

Every action is checked by the pure state machine (``api.domain.lifecycle``) against the
incident as read, then written with the version the caller saw.
"""

from __future__ import annotations

from api.domain import lifecycle
from api.domain.errors import InvalidInput, NotFound
from api.domain.lifecycle import (
    ACTIVE_WORK_ORDERS,
    ClosingReason,
    IncidentAction,
    IncidentStatus,
    WorkOrderStatus,
)
from api.domain.models import IncidentRecord, TransferRecord, WorkOrderRecord
from api.services.idempotency import once
from api.services.incidents.common import POLICY_ACTIONS, IncidentCommand, payload, text
from api.services.incidents.work_orders import WorkOrderSpec, new_work_order

A = IncidentAction
# What happens to an incident's work orders when it takes a step.
WORK_ORDERS_ON = {
    A.START_WORK: ((WorkOrderStatus.OPEN,), WorkOrderStatus.IN_PROGRESS),
    A.RESOLVE: (ACTIVE_WORK_ORDERS, WorkOrderStatus.COMPLETED),
    A.CLOSE: (ACTIVE_WORK_ORDERS, WorkOrderStatus.CANCELLED),
}


class IncidentLifecycle(IncidentCommand):
    async def act(
        self,
        incident_id: int,
        expected_version: int,
        action: IncidentAction,
        note: str = "",
        closing_reason: ClosingReason | None = None,
    ) -> IncidentRecord:
        """Verify, start work, resolve, reopen or close an incident."""
        if action in (A.DISPATCH, A.TRANSFER, A.MARK_DUPLICATE):
            raise ValueError(f"{action} has its own method")
        async with self._uow.savepoint():
            context = {"closingReason": closing_reason.value} if closing_reason else None
            incident = await self._current(
                incident_id, expected_version, POLICY_ACTIONS[action], context
            )
            # Check the transition before touching work orders.
            lifecycle.plan(IncidentStatus(incident.status), action, closing_reason)
            moved: list[WorkOrderRecord] = []
            if action in WORK_ORDERS_ON:
                statuses, target = WORK_ORDERS_ON[action]
                moved = await self.incidents.move_work_orders(incident.id, statuses, target)
            data = {"work_orders": [order.id for order in moved]} if moved else {}
            return await self._move(
                incident, action, note, closing_reason=closing_reason, data=data
            )

    async def dispatch(
        self,
        incident_id: int,
        expected_version: int,
        order: WorkOrderSpec,
        note: str,
        idempotency_key: str | None,
    ) -> tuple[IncidentRecord, WorkOrderRecord, bool]:
        """Dispatch (派工): the incident goes to a crew of its responsible bureau."""

        async def create() -> tuple[tuple[IncidentRecord, WorkOrderRecord], int]:
            incident = await self._current(incident_id, expected_version, "DispatchIncident")
            lifecycle.plan(IncidentStatus(incident.status), A.DISPATCH)
            work_order = await self.incidents.create_work_order(
                incident.id,
                incident.responsible_bureau_id,
                new_work_order(order, incident),
                self._actor,
            )
            moved = await self._move(incident, A.DISPATCH, note, data={"work_order": work_order.id})
            return (moved, work_order), work_order.id

        async def replay(work_order_id: int) -> tuple[IncidentRecord, WorkOrderRecord]:
            work_order = (await self.incidents.work_orders_by_ids([work_order_id]))[work_order_id]
            return await self.incidents.get(work_order.incident_id), work_order

        async with self._uow.savepoint():
            (incident, work_order), replayed = await once(
                self._keys,
                subject=self._actor,
                key=idempotency_key,
                operation="dispatchIncident",
                payload={"incident": incident_id, "version": expected_version, **payload(order)},
                create=create,
                replay=replay,
            )
            return incident, work_order, replayed

    async def transfer(
        self, incident_id: int, expected_version: int, to_bureau_id: int, reason: str
    ) -> tuple[IncidentRecord, TransferRecord]:
        """Hand the incident to another bureau (the current one declines responsibility)."""
        async with self._uow.savepoint():
            reason = text("reason", reason, required=True, limit=2000)
            incident = await self._current(incident_id, expected_version, "TransferIncident")
            lifecycle.plan(IncidentStatus(incident.status), A.TRANSFER)
            if to_bureau_id == incident.responsible_bureau_id:
                raise InvalidInput("toBureauId", "the incident is already with that bureau")
            if to_bureau_id not in await self._bureaus.by_ids([to_bureau_id]):
                raise NotFound("bureau", to_bureau_id)
            cancelled = await self.incidents.move_work_orders(
                incident.id, ACTIVE_WORK_ORDERS, WorkOrderStatus.CANCELLED
            )
            transfer = await self.incidents.record_transfer(
                incident.id, incident.responsible_bureau_id, to_bureau_id, reason, self._actor
            )
            moved = await self._move(
                incident,
                A.TRANSFER,
                reason,
                responsible_bureau_id=to_bureau_id,
                involve=(incident.responsible_bureau_id,),
                data={
                    "transfer": transfer.id,
                    "from_bureau": incident.responsible_bureau_id,
                    "to_bureau": to_bureau_id,
                    "cancelled_work_orders": [order.id for order in cancelled],
                },
            )
            return moved, transfer

    async def mark_duplicate(
        self, incident_id: int, expected_version: int, canonical_id: int, note: str
    ) -> IncidentRecord:
        """Close the incident as a duplicate of ``canonical_id``."""
        async with self._uow.savepoint():
            if canonical_id == incident_id:
                raise InvalidInput("duplicateOf", "an incident cannot duplicate itself")
            incident = await self._current(incident_id, expected_version, "MarkDuplicate")
            lifecycle.plan(IncidentStatus(incident.status), A.MARK_DUPLICATE)
            canonical = (await self.incidents.by_ids([canonical_id])).get(canonical_id)
            if canonical is None:
                raise NotFound("incident", canonical_id)
            if canonical.duplicate_of_id is not None:
                # Name the original only if the caller may see it: an error must not tell of
                # anything outside the caller's view.
                original = canonical.duplicate_of_id
                seen = original in await self.incidents.by_ids([original])
                raise InvalidInput(
                    "duplicateOf",
                    f"incident {canonical_id} is itself a duplicate"
                    + (f" of {original}; link to that one" if seen else "; link to its original"),
                )
            cancelled = await self.incidents.move_work_orders(
                incident.id, ACTIVE_WORK_ORDERS, WorkOrderStatus.CANCELLED
            )
            return await self._move(
                incident,
                A.MARK_DUPLICATE,
                note,
                duplicate_of_id=canonical_id,
                data={
                    "duplicate_of": canonical_id,
                    "cancelled_work_orders": [order.id for order in cancelled],
                },
            )
