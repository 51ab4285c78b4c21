"""What the caller may see of incidents, for the graph and REST alike.

The policies decide first (may the caller list incidents at all?); row-level security then
filters every row; and each incident returned is noted for the operation's audit record.
Personal data is decided per incident and noted apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from api.access.scope import AccessScope
from api.domain import lifecycle
from api.domain.errors import PersonalDataMasked
from api.domain.models import (
    EventRecord,
    IncidentFacts,
    IncidentRecord,
    ReporterRecord,
    TransferRecord,
    WorkOrderRecord,
)
from api.domain.search import DuplicateCandidates
from api.policy import resources
from api.repositories.companions import Companion
from api.repositories.incidents import IncidentFilter, IncidentRepository
from api.repositories.sql import Ordering, Page, PageRequest
from api.services.incidents.common import POLICY_ACTIONS


@dataclass(frozen=True, slots=True)
class Permitted:
    """What the caller may do to an incident now."""

    actions: tuple[lifecycle.IncidentAction, ...]
    closing_reasons: tuple[lifecycle.ClosingReason, ...]


class IncidentReads:
    def __init__(self, access: AccessScope) -> None:
        self._access = access
        self._repository = IncidentRepository(access.uow)

    def _may_list(self) -> None:
        self._access.authorize("ListIncidents", resources.INCIDENTS)

    def _returned(self, records: Sequence[IncidentRecord]) -> None:
        self._access.audit.saw("Incident", [record.id for record in records])

    async def page(
        self,
        where: IncidentFilter,
        ordering: Ordering,
        request: PageRequest,
        companions: Sequence[Companion[Any]] = (),
    ) -> Page[IncidentRecord]:
        """A page of incidents; ``companions`` (reads of what they refer to) in the same
        statement."""
        self._may_list()
        page = await self._repository.page(where, ordering, request, companions)
        self._returned(page.items)
        return page

    async def count(self, where: IncidentFilter) -> int:
        self._may_list()
        return await self._repository.count(where)

    async def by_ids(self, ids: Sequence[int]) -> dict[int, IncidentRecord]:
        """The incidents among ``ids`` the caller may see."""
        self._may_list()
        found = await self._repository.by_ids(ids)
        self._returned(list(found.values()))
        return found

    async def duplicates_of(self, ids: Sequence[int]) -> dict[int, list[IncidentRecord]]:
        found = await self._repository.duplicates_of(ids)
        self._returned([record for records in found.values() for record in records])
        return found

    async def duplicate_candidates(
        self, ids: Sequence[int], candidates: DuplicateCandidates
    ) -> dict[int, list[tuple[IncidentRecord, float]]]:
        """For each incident, others the caller sees that it may duplicate, nearest first."""
        found = await self._repository.duplicate_candidates(
            ids, candidates.meters, candidates.within, candidates.first
        )
        self._returned([record for pairs in found.values() for record, _ in pairs])
        return found

    async def work_orders_by_ids(self, ids: Sequence[int]) -> dict[int, WorkOrderRecord]:
        self._may_list()
        return await self._repository.work_orders_by_ids(ids)

    async def work_orders_for(
        self, ids: Sequence[int], statuses: Sequence[str]
    ) -> dict[int, list[WorkOrderRecord]]:
        return await self._repository.work_orders_for(ids, statuses)

    async def events_for(
        self, ids: Sequence[int], limit: int, newest_first: bool
    ) -> dict[int, list[EventRecord]]:
        return await self._repository.events_for(ids, limit, newest_first)

    def events_companion(self, limit: int, newest_first: bool) -> Companion[EventRecord]:
        """``events_for`` as a read a page folds into its own statement."""
        return self._repository.events_companion(limit, newest_first)

    def work_orders_companion(self, statuses: Sequence[str]) -> Companion[WorkOrderRecord]:
        return self._repository.work_orders_companion(statuses)

    def transfers_companion(self) -> Companion[TransferRecord]:
        return self._repository.transfers_companion()

    def by_ids_companion(self) -> Companion[IncidentRecord] | None:
        """``by_ids`` as a read a page folds into its own statement (the incidents read are
        noted for the audit record); None where the caller may not list incidents."""
        if not self._access.authorizer.foresee("ListIncidents", resources.INCIDENTS):
            return None

        def read(records: Sequence[IncidentRecord]) -> None:
            self._may_list()
            self._returned(records)

        return self._repository.by_ids_companion().followed_by(read)

    def duplicates_companion(self) -> Companion[IncidentRecord]:
        return self._repository.duplicates_companion().followed_by(self._returned)

    async def transfers_for(self, ids: Sequence[int]) -> dict[int, list[TransferRecord]]:
        return await self._repository.transfers_for(ids)

    async def facts(self, ids: Sequence[int]) -> dict[int, IncidentFacts]:
        """What the policies need to know about each visible incident (not shown to anyone)."""
        return await self._repository.facts(ids)

    async def permitted(
        self, incidents: Sequence[tuple[int, str]]
    ) -> dict[tuple[int, str], Permitted]:
        """For each (incident ID, status): of the actions the status allows, those the
        policies let the caller take on the incident, and the closing reasons it may close it
        with (each decision audited, as the action's own would be). What a frontend shows as
        buttons; an action is decided again when it is taken."""
        facts = await self._repository.facts([incident for incident, _ in incidents])
        decide = self._access.authorizer.decide
        permitted: dict[tuple[int, str], Permitted] = {}
        for incident, status in incidents:
            found = facts.get(incident)
            if found is None:
                permitted[incident, status] = Permitted((), ())
                continue
            entity = resources.incident_entity(found)
            state = lifecycle.IncidentStatus(status)
            reasons = tuple(
                reason
                for reason in sorted(lifecycle.CLOSING_REASONS[state])
                if decide("CloseIncident", entity, {"closingReason": reason.value}).allowed
            )
            actions = tuple(
                action
                for action in lifecycle.allowed_actions(state)
                if (
                    bool(reasons)
                    if action is lifecycle.IncidentAction.CLOSE
                    else decide(POLICY_ACTIONS[action], entity).allowed
                )
            )
            permitted[incident, status] = Permitted(actions, reasons)
        return permitted

    async def reporters(
        self, ids: Sequence[int]
    ) -> list[ReporterRecord | PersonalDataMasked | None]:
        """Who reported each incident, where the policies let the caller see personal data;
        ``PersonalDataMasked`` where they do not; None where there is nothing to show."""
        facts = await self._repository.facts(ids)
        visible = [i for i in dict.fromkeys(ids) if i in facts]
        decisions = self._access.authorizer.decide_many(
            "ViewPersonalData", [resources.incident_entity(facts[i]) for i in visible]
        )
        allowed = {i for i, decision in zip(visible, decisions, strict=True) if decision.allowed}
        records = await self._repository.reporters(sorted(allowed)) if allowed else {}
        answers: list[ReporterRecord | PersonalDataMasked | None] = []
        for incident_id in ids:
            if incident_id not in facts:
                answers.append(None)
            elif incident_id not in allowed:
                answers.append(PersonalDataMasked())
            else:
                record = records.get(incident_id)
                if record is not None:
                    self._access.audit.saw_personal_data("Incident", incident_id)
                answers.append(record)
        return answers
