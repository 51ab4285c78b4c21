"""Per-scope DataLoaders for incidents and what hangs off them.

A nested list (events, work orders) is loaded for every incident on the page in one statement,
whatever the page size; loaders for the same field with different arguments are kept apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from strawberry.dataloader import DataLoader

from api.db.unit_of_work import UnitOfWork
from api.domain.models import (
    EventRecord,
    IncidentFacts,
    IncidentRecord,
    ReporterRecord,
    TransferRecord,
    WorkOrderRecord,
)
from api.repositories.incidents import IncidentRepository


class IncidentLoaders:
    def __init__(self, uow: UnitOfWork) -> None:
        self._repository = IncidentRepository(uow)
        self.by_id: DataLoader[int, IncidentRecord | None] = DataLoader(load_fn=self._by_id)
        self.duplicates: DataLoader[int, list[IncidentRecord]] = DataLoader(
            load_fn=self._duplicates
        )
        self.transfers: DataLoader[int, list[TransferRecord]] = DataLoader(load_fn=self._transfers)
        self.work_order: DataLoader[int, WorkOrderRecord | None] = DataLoader(
            load_fn=self._work_order
        )
        self.facts: DataLoader[int, IncidentFacts | None] = DataLoader(load_fn=self._facts)
        self.reporter: DataLoader[int, ReporterRecord | None] = DataLoader(load_fn=self._reporter)
        self._events: dict[tuple[int, bool], DataLoader[int, list[EventRecord]]] = {}
        self._work_orders: dict[tuple[str, ...], DataLoader[int, list[WorkOrderRecord]]] = {}

    def prime(self, records: Sequence[IncidentRecord]) -> None:
        for record in records:
            self.by_id.prime(record.id, record)

    async def _by_id(self, ids: Sequence[int]) -> list[IncidentRecord | None]:
        found = await self._repository.by_ids(ids)
        return [found.get(i) for i in ids]

    async def _duplicates(self, ids: Sequence[int]) -> list[list[IncidentRecord]]:
        found = await self._repository.duplicates_of(ids)
        return [found.get(i, []) for i in ids]

    async def _work_order(self, ids: Sequence[int]) -> list[WorkOrderRecord | None]:
        found = await self._repository.work_orders_by_ids(ids)
        return [found.get(i) for i in ids]

    async def _facts(self, ids: Sequence[int]) -> list[IncidentFacts | None]:
        found = await self._repository.facts(ids)
        return [found.get(i) for i in ids]

    async def _reporter(self, ids: Sequence[int]) -> list[ReporterRecord | None]:
        found = await self._repository.reporters(ids)
        return [found.get(i) for i in ids]

    async def _transfers(self, ids: Sequence[int]) -> list[list[TransferRecord]]:
        found = await self._repository.transfers_for(ids)
        return [found.get(i, []) for i in ids]

    def events(self, limit: int, newest_first: bool) -> DataLoader[int, list[EventRecord]]:
        key = (limit, newest_first)
        loader = self._events.get(key)
        if loader is None:

            async def load(ids: Sequence[int]) -> list[list[EventRecord]]:
                found = await self._repository.events_for(ids, limit, newest_first)
                return [found.get(i, []) for i in ids]

            loader = self._events[key] = DataLoader(load_fn=load)
        return loader

    def work_orders(self, statuses: Sequence[str]) -> DataLoader[int, list[WorkOrderRecord]]:
        key = tuple(sorted(statuses))
        loader = self._work_orders.get(key)
        if loader is None:

            async def load(ids: Sequence[int]) -> list[list[WorkOrderRecord]]:
                found = await self._repository.work_orders_for(ids, key)
                return [found.get(i, []) for i in ids]

            loader = self._work_orders[key] = DataLoader(load_fn=load)
        return loader
