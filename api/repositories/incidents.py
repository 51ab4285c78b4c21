"""Incidents, their append-only event log, work orders and transfers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from api.db.errors import translate
from api.db.unit_of_work import UnitOfWork
from api.domain import lifecycle
from api.domain.errors import Forbidden, NotFound, VersionConflict
from api.domain.geo import BoundingBox, Circle
from api.domain.models import (
    EventRecord,
    IncidentFacts,
    IncidentRecord,
    ReporterRecord,
    TransferRecord,
    WorkOrderRecord,
    columns,
)
from api.repositories.companions import Companion, read_page
from api.repositories.json_sql import ChildRows, case_of
from api.repositories.sql import (
    Conditions,
    Ordering,
    Page,
    PageRequest,
    finish_page,
    like_pattern,
)

INCIDENT_COLUMNS = columns(IncidentRecord)
EVENT_COLUMNS = columns(EventRecord)
WORK_ORDER_COLUMNS = columns(WorkOrderRecord)
TRANSFER_COLUMNS = columns(TransferRecord)
REPORTER_COLUMNS = columns(ReporterRecord)

AT_AND_ID = (datetime, int)
NEWEST_FIRST = Ordering("NEWEST_FIRST", ("reported_at", "id"), descending=True, types=AT_AND_ID)
OLDEST_FIRST = Ordering("OLDEST_FIRST", ("reported_at", "id"), descending=False, types=AT_AND_ID)
DUE_SOONEST = Ordering("DUE_SOONEST", ("due_at", "id"), descending=False, types=AT_AND_ID)
INCIDENT_ORDERINGS = {o.name: o for o in (NEWEST_FIRST, OLDEST_FIRST, DUE_SOONEST)}

INCIDENTS_BY_ID = f"SELECT {INCIDENT_COLUMNS} FROM incident WHERE id = ANY($1::bigint[])"
INCIDENT_VERSION = "SELECT version FROM incident WHERE id = $1"
DUPLICATES_OF = (
    f"SELECT {INCIDENT_COLUMNS} FROM incident WHERE duplicate_of_id = ANY($1::bigint[]) ORDER BY id"
)

# For each incident, others it may duplicate (the caller's to see, by row security): the same
# category, not themselves duplicates, reported within $3 of it and within $2 metres, nearest
# first (earth_box is the GiST-indexed prefilter, earth_distance makes it exact).
DUPLICATE_CANDIDATES = f"""
SELECT o.id AS candidate_for, c.*
FROM incident o
CROSS JOIN LATERAL (
    SELECT {INCIDENT_COLUMNS},
           earth_distance(ll_to_earth(o.latitude, o.longitude),
                          ll_to_earth(latitude, longitude)) AS distance_meters
    FROM incident
    WHERE id <> o.id AND category = o.category AND duplicate_of_id IS NULL
      AND reported_at BETWEEN o.reported_at - $3::interval AND o.reported_at + $3::interval
      AND earth_box(ll_to_earth(o.latitude, o.longitude), $2) @> ll_to_earth(latitude, longitude)
      AND earth_distance(ll_to_earth(o.latitude, o.longitude),
                         ll_to_earth(latitude, longitude)) <= $2
    ORDER BY distance_meters, reported_at DESC, id
    LIMIT $4
) c
WHERE o.id = ANY($1::bigint[])
ORDER BY o.id, c.distance_meters, c.reported_at DESC, c.id
"""

INSERT_INCIDENT = f"""
INSERT INTO incident (title, description, category, status, source, responsible_bureau_id,
    reporting_bureau_id, asset_id, latitude, longitude, reported_at, due_at, created_by,
    involved_bureau_ids)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
RETURNING {INCIDENT_COLUMNS}
"""
# Many at once (the vision workers' reports), in the order given: rows are numbered as they
# are produced in that order, so their ids ascend with it.
INSERT_INCIDENTS = f"""
INSERT INTO incident (title, description, category, status, source, responsible_bureau_id,
    reporting_bureau_id, asset_id, latitude, longitude, reported_at, due_at, created_by,
    involved_bureau_ids)
SELECT t.title, t.description, t.category, t.status, t.source, t.responsible, t.reporting,
       t.asset, t.latitude, t.longitude, t.reported_at, t.due_at, $13, t.involved::int[]
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[],
            $8::bigint[], $9::float8[], $10::float8[], $11::timestamptz[], $12::timestamptz[],
            $14::text[])
     WITH ORDINALITY AS t(title, description, category, status, source, responsible, reporting,
                          asset, latitude, longitude, reported_at, due_at, involved, ord)
ORDER BY t.ord
RETURNING {INCIDENT_COLUMNS}
"""
RECORD_CREATIONS = """
WITH event AS (
    INSERT INTO incident_event (incident_id, kind, to_status, actor, note, data)
    SELECT t.id, 'CREATED', t.status, $3, '', '{}'::jsonb
    FROM unnest($1::bigint[], $2::text[]) AS t(id, status)
)
INSERT INTO incident_reporter (incident_id, name, phone, email, personal_note)
SELECT t.id, t.name, t.phone, t.email, t.note
FROM unnest($1::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
     AS t(id, name, phone, email, note)
WHERE t.name IS NOT NULL OR t.phone IS NOT NULL OR t.email IS NOT NULL OR t.note IS NOT NULL
"""
# A separate statement: row policies on the event and reporter tables look the incident up, and
# a statement does not see rows its own sub-statements insert.
RECORD_CREATION = """
WITH event AS (
    INSERT INTO incident_event (incident_id, kind, to_status, actor, note, data)
    VALUES ($1, 'CREATED', $2, $3, '', '{}'::jsonb)
)
INSERT INTO incident_reporter (incident_id, name, phone, email, personal_note)
SELECT $1, $4, $5, $6, $7
WHERE $4::text IS NOT NULL OR $5::text IS NOT NULL OR $6::text IS NOT NULL OR $7::text IS NOT NULL
"""
REPORTERS = f"""
SELECT {REPORTER_COLUMNS} FROM incident_reporter WHERE incident_id = ANY($1::bigint[])
"""
FACTS = "SELECT * FROM lighthouse.incident_facts($1::bigint[])"
INSERT_SHARE = """
INSERT INTO incident_share (incident_id, bureau_id, reason, shared_by) VALUES ($1, $2, $3, $4)
ON CONFLICT (incident_id, bureau_id) DO NOTHING
"""

# One statement moves the incident (only if nobody moved it first) and records the event.
APPLY_CHANGE = f"""
WITH changed AS (
    UPDATE incident SET
        status = $3,
        closing_reason = $4,
        closed_at = CASE WHEN $3 = 'CLOSED' THEN now() END,
        responsible_bureau_id = $5,
        duplicate_of_id = $6,
        involved_bureau_ids = ARRAY(
            SELECT DISTINCT b FROM unnest(involved_bureau_ids || $12::int[]) AS b
            WHERE b <> $5 ORDER BY b),
        version = version + 1,
        updated_at = now()
    WHERE id = $1 AND version = $2
    RETURNING {INCIDENT_COLUMNS}
), event AS (
    INSERT INTO incident_event (incident_id, kind, from_status, to_status, actor, note, data)
    SELECT id, $7, $8, status, $9, $10, $11 FROM changed
)
SELECT {INCIDENT_COLUMNS} FROM changed
"""

LATEST_EVENTS = f"""
SELECT e.* FROM unnest($1::bigint[]) AS parent (id)
CROSS JOIN LATERAL (
    SELECT {EVENT_COLUMNS} FROM incident_event
    WHERE incident_id = parent.id ORDER BY id DESC LIMIT $2
) AS e
"""
EARLIEST_EVENTS = LATEST_EVENTS.replace("ORDER BY id DESC", "ORDER BY id ASC")

WORK_ORDERS_FOR = f"""
SELECT {WORK_ORDER_COLUMNS} FROM work_order
WHERE incident_id = ANY($1::bigint[]) AND status = ANY($2::text[])
ORDER BY incident_id, id
"""
WORK_ORDERS_BY_ID = f"SELECT {WORK_ORDER_COLUMNS} FROM work_order WHERE id = ANY($1::bigint[])"
INSERT_WORK_ORDER = f"""
INSERT INTO work_order (incident_id, bureau_id, status, crew, instructions, due_at, created_by)
VALUES ($1, $2, 'OPEN', $3, $4, $5, $6)
RETURNING {WORK_ORDER_COLUMNS}
"""
MOVE_WORK_ORDERS = f"""
UPDATE work_order SET
    status = $3,
    finished_at = CASE WHEN $3 IN ('COMPLETED', 'CANCELLED') THEN now() END
WHERE incident_id = $1 AND status = ANY($2::text[])
RETURNING {WORK_ORDER_COLUMNS}
"""
FINISH_WORK_ORDER = f"""
UPDATE work_order SET status = $3, finished_at = now()
WHERE id = $1 AND status = ANY($2::text[])
RETURNING {WORK_ORDER_COLUMNS}
"""

# --- for compiled documents (api.graph.core.compiled): incidents' own columns and lists ------

CASE_NUMBER_SQL = (
    "'KH-' || CASE WHEN {row}.id < 100000000 THEN lpad({row}.id::text, 8, '0') "
    "ELSE {row}.id::text END"
)  # IncidentRecord.case_number
STATUS_CLASS_SQL = case_of(
    "{row}.status", {s.value: c.value for s, c in lifecycle.STATUS_CLASS.items()}
)
EVENT_ID_SQL = "{row}.id::text"  # an event's id is a string in the graph
TRANSFER_ID_SQL = "{row}.id::text"  # and so is a transfer's


def events_rows(limit: str, newest_first: bool) -> ChildRows:
    """An incident's newest (or oldest) ``limit`` events, as ``LATEST_EVENTS`` reads them."""
    direction = "DESC" if newest_first else "ASC"
    return ChildRows(
        "SELECT * FROM incident_event WHERE incident_id = {parent}.id "
        f"ORDER BY id {direction} LIMIT {limit}",
        f"id {direction}",
    )


def transfers_rows() -> ChildRows:
    """An incident's transfers, as ``TRANSFERS_FOR`` reads them."""
    return ChildRows("SELECT * FROM incident_transfer WHERE incident_id = {parent}.id", "id")


def work_orders_rows(statuses: str) -> ChildRows:
    """An incident's work orders in ``statuses``, as ``WORK_ORDERS_FOR`` reads them."""
    return ChildRows(
        f"SELECT * FROM work_order WHERE incident_id = {{parent}}.id AND status = ANY({statuses})",
        "id",
    )


TRANSFERS_FOR = f"""
SELECT {TRANSFER_COLUMNS} FROM incident_transfer
WHERE incident_id = ANY($1::bigint[]) ORDER BY incident_id, id
"""
INSERT_TRANSFER = f"""
INSERT INTO incident_transfer (incident_id, from_bureau_id, to_bureau_id, reason, actor)
VALUES ($1, $2, $3, $4, $5)
RETURNING {TRANSFER_COLUMNS}
"""
INSERT_EVENT = f"""
INSERT INTO incident_event (incident_id, kind, from_status, to_status, actor, note, data)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING {EVENT_COLUMNS}
"""


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    statuses: Sequence[str] | None = None
    categories: Sequence[str] | None = None
    bureau_ids: Sequence[int] | None = None
    bureau_codes: Sequence[str] | None = None
    asset_ids: Sequence[int] | None = None
    reported_from: datetime | None = None
    reported_before: datetime | None = None
    overdue: bool | None = None
    now: datetime | None = None
    near: Circle | None = None
    within: BoundingBox | None = None
    # Each word in the title or the description, in any case; or the incident a case number
    # names (IncidentSearch, in the domain).
    words: Sequence[str] | None = None
    case_id: int | None = None

    def conditions(self, args: list[object] | None = None) -> Conditions:
        where = Conditions(args)
        if self.case_id is not None:
            where.add("id = {}", self.case_id)
        for word in self.words or ():
            where.add("(title ILIKE {0} OR description ILIKE {0})", like_pattern(word))
        if self.statuses is not None:
            where.add("status = ANY({}::text[])", list(self.statuses))
        if self.categories is not None:
            where.add("category = ANY({}::text[])", list(self.categories))
        if self.bureau_ids is not None:
            where.add("responsible_bureau_id = ANY({}::int[])", list(self.bureau_ids))
        if self.bureau_codes is not None:
            where.add(
                "responsible_bureau_id IN (SELECT id FROM bureau WHERE code = ANY({}::text[]))",
                list(self.bureau_codes),
            )
        if self.asset_ids is not None:
            where.add("asset_id = ANY({}::bigint[])", list(self.asset_ids))
        if self.reported_from is not None:
            where.add("reported_at >= {}", self.reported_from)
        if self.reported_before is not None:
            where.add("reported_at < {}", self.reported_before)
        if self.overdue is not None:
            overdue = "status NOT IN ('RESOLVED', 'CLOSED') AND due_at < {}"
            where.add(overdue if self.overdue else f"NOT ({overdue})", self.now)
        if self.near is not None:
            where.near(self.near)
        if self.within is not None:
            where.within(self.within)
        return where


@dataclass(frozen=True, slots=True)
class NewIncident:
    title: str
    description: str
    category: str
    status: str
    source: str
    responsible_bureau_id: int
    reporting_bureau_id: int | None
    asset_id: int | None
    latitude: float
    longitude: float
    reporter_name: str | None
    reporter_phone: str | None
    reporter_email: str | None
    reporter_note: str | None
    reported_at: datetime
    due_at: datetime
    involved_bureau_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """The new state of an incident after a workflow action, and the event that records it."""

    status: str
    closing_reason: str | None
    responsible_bureau_id: int
    duplicate_of_id: int | None
    event_kind: str
    from_status: str
    note: str
    data: dict[str, Any]
    involve_bureau_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class NewWorkOrder:
    crew: str
    instructions: str
    due_at: datetime | None


T = TypeVar("T")


def _group(records: list[T], key: str) -> dict[int, list[T]]:
    grouped: dict[int, list[T]] = defaultdict(list)
    for record in records:
        grouped[getattr(record, key)].append(record)
    return grouped


class IncidentRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    # --- reads --------------------------------------------------------------------------

    async def by_ids(self, ids: Sequence[int]) -> dict[int, IncidentRecord]:
        rows = await self._uow.fetch(INCIDENTS_BY_ID, list(ids))
        return {row["id"]: IncidentRecord(**row) for row in rows}

    async def get(self, incident_id: int) -> IncidentRecord:
        found = await self.by_ids([incident_id])
        if incident_id not in found:
            raise NotFound("incident", incident_id)
        return found[incident_id]

    async def page(
        self,
        where: IncidentFilter,
        ordering: Ordering,
        request: PageRequest,
        companions: Sequence[Companion[Any]] = (),
    ) -> Page[IncidentRecord]:
        """A page of incidents; ``companions`` are read in the same statement."""
        conditions = where.conditions()
        if request.cursor is not None:
            ordering.after(conditions, request.cursor, request.backward)
        limit = conditions.param(request.limit + 1)
        order_by = ordering.order_by(request.backward)
        query = (
            f"SELECT {INCIDENT_COLUMNS} FROM incident WHERE {conditions.sql()}"
            f" ORDER BY {order_by} LIMIT {limit}"
        )
        rows = await read_page(
            self._uow, query, conditions.args, order_by, IncidentRecord, companions
        )
        return finish_page(rows, request)

    async def count(self, where: IncidentFilter) -> int:
        conditions = where.conditions()
        query = f"SELECT count(*) FROM incident WHERE {conditions.sql()}"
        return int(await self._uow.fetchval(query, *conditions.args))

    # --- batch reads a page can fold into its own statement (api.repositories.companions) ---

    @staticmethod
    def events_companion(limit: int, newest_first: bool) -> Companion[EventRecord]:
        query = LATEST_EVENTS if newest_first else EARLIEST_EVENTS
        return Companion(query, EventRecord, (limit,))

    @staticmethod
    def work_orders_companion(statuses: Sequence[str]) -> Companion[WorkOrderRecord]:
        return Companion(WORK_ORDERS_FOR, WorkOrderRecord, (list(statuses),))

    @staticmethod
    def transfers_companion() -> Companion[TransferRecord]:
        return Companion(TRANSFERS_FOR, TransferRecord)

    @staticmethod
    def by_ids_companion() -> Companion[IncidentRecord]:
        return Companion(INCIDENTS_BY_ID, IncidentRecord)

    @staticmethod
    def duplicates_companion() -> Companion[IncidentRecord]:
        return Companion(DUPLICATES_OF, IncidentRecord)

    async def events_for(
        self, incident_ids: Sequence[int], limit: int, newest_first: bool
    ) -> dict[int, list[EventRecord]]:
        query = LATEST_EVENTS if newest_first else EARLIEST_EVENTS
        rows = await self._uow.fetch(query, list(incident_ids), limit)
        return _group([EventRecord(**row) for row in rows], "incident_id")

    async def duplicates_of(self, incident_ids: Sequence[int]) -> dict[int, list[IncidentRecord]]:
        rows = await self._uow.fetch(DUPLICATES_OF, list(incident_ids))
        return _group([IncidentRecord(**row) for row in rows], "duplicate_of_id")

    async def duplicate_candidates(
        self, incident_ids: Sequence[int], meters: float, within: timedelta, first: int
    ) -> dict[int, list[tuple[IncidentRecord, float]]]:
        """For each incident, up to ``first`` others it may duplicate, with their distances."""
        rows = await self._uow.fetch(
            DUPLICATE_CANDIDATES, list(incident_ids), meters, within, first
        )
        found: dict[int, list[tuple[IncidentRecord, float]]] = defaultdict(list)
        for row in rows:
            values = dict(row)
            of, meters_away = values.pop("candidate_for"), values.pop("distance_meters")
            found[of].append((IncidentRecord(**values), meters_away))
        return found

    async def work_orders_for(
        self, incident_ids: Sequence[int], statuses: Sequence[str]
    ) -> dict[int, list[WorkOrderRecord]]:
        rows = await self._uow.fetch(WORK_ORDERS_FOR, list(incident_ids), list(statuses))
        return _group([WorkOrderRecord(**row) for row in rows], "incident_id")

    async def work_orders_by_ids(self, ids: Sequence[int]) -> dict[int, WorkOrderRecord]:
        rows = await self._uow.fetch(WORK_ORDERS_BY_ID, list(ids))
        return {row["id"]: WorkOrderRecord(**row) for row in rows}

    async def transfers_for(self, incident_ids: Sequence[int]) -> dict[int, list[TransferRecord]]:
        rows = await self._uow.fetch(TRANSFERS_FOR, list(incident_ids))
        return _group([TransferRecord(**row) for row in rows], "incident_id")

    # --- writes -------------------------------------------------------------------------

    async def create(self, incident: NewIncident, actor: str) -> IncidentRecord:
        try:
            row = await self._uow.fetchrow(
                INSERT_INCIDENT,
                incident.title,
                incident.description,
                incident.category,
                incident.status,
                incident.source,
                incident.responsible_bureau_id,
                incident.reporting_bureau_id,
                incident.asset_id,
                incident.latitude,
                incident.longitude,
                incident.reported_at,
                incident.due_at,
                actor,
                list(incident.involved_bureau_ids),
            )
            assert row is not None
            await self._uow.execute(
                RECORD_CREATION,
                row["id"],
                incident.status,
                actor,
                incident.reporter_name,
                incident.reporter_phone,
                incident.reporter_email,
                incident.reporter_note,
            )
        except asyncpg.PostgresError as error:
            raise translate(error) or error from None
        return IncidentRecord(**row)

    async def create_many(
        self, incidents: Sequence[NewIncident], actor: str
    ) -> list[IncidentRecord]:
        """``create`` for many incidents in two statements; the records in the given order."""
        if not incidents:
            return []
        try:
            rows = await self._uow.fetch(
                INSERT_INCIDENTS,
                [i.title for i in incidents],
                [i.description for i in incidents],
                [i.category for i in incidents],
                [i.status for i in incidents],
                [i.source for i in incidents],
                [i.responsible_bureau_id for i in incidents],
                [i.reporting_bureau_id for i in incidents],
                [i.asset_id for i in incidents],
                [i.latitude for i in incidents],
                [i.longitude for i in incidents],
                [i.reported_at for i in incidents],
                [i.due_at for i in incidents],
                actor,
                ["{" + ",".join(map(str, i.involved_bureau_ids)) + "}" for i in incidents],
            )
            records = sorted((IncidentRecord(**row) for row in rows), key=lambda r: r.id)
            await self._uow.execute(
                RECORD_CREATIONS,
                [r.id for r in records],
                [r.status for r in records],
                actor,
                [i.reporter_name for i in incidents],
                [i.reporter_phone for i in incidents],
                [i.reporter_email for i in incidents],
                [i.reporter_note for i in incidents],
            )
        except asyncpg.PostgresError as error:
            raise translate(error) or error from None
        return records

    async def apply_change(
        self, incident_id: int, expected_version: int, change: IncidentChange, actor: str
    ) -> IncidentRecord:
        """Write ``change`` if the incident is still at ``expected_version``.

        Two writers holding the same version race on the row lock; the loser re-reads the row
        after the winner commits, finds the version moved, and gets VersionConflict.
        """
        try:
            row = await self._uow.fetchrow(
                APPLY_CHANGE,
                incident_id,
                expected_version,
                change.status,
                change.closing_reason,
                change.responsible_bureau_id,
                change.duplicate_of_id,
                change.event_kind,
                change.from_status,
                actor,
                change.note,
                change.data,
                list(change.involve_bureau_ids),
            )
        except asyncpg.PostgresError as error:
            raise translate(error) or error from None
        if row is None:
            current = await self._uow.fetchval(INCIDENT_VERSION, incident_id)
            if current is None:
                raise NotFound("incident", incident_id)
            if current == expected_version:
                # Visible, at the expected version, yet not updated: the row policy refused.
                raise Forbidden("the database's access rules do not let you change this incident")
            raise VersionConflict("incident", expected_version, current)
        return IncidentRecord(**row)

    async def reporters(self, incident_ids: Sequence[int]) -> dict[int, ReporterRecord]:
        rows = await self._uow.fetch(REPORTERS, list(incident_ids))
        return {row["incident_id"]: ReporterRecord(**row) for row in rows}

    async def facts(self, incident_ids: Sequence[int]) -> dict[int, IncidentFacts]:
        rows = await self._uow.fetch(FACTS, list(incident_ids))
        return {
            row["incident_id"]: IncidentFacts(
                incident_id=row["incident_id"],
                responsible_bureau=row["responsible"],
                reporting_bureau=row["reporting"],
                asset_bureau=row["asset_bureau"],
                held_by=frozenset(row["held_by"]),
                shared_with=frozenset(row["shared_with"]),
            )
            for row in rows
        }

    async def share(self, incident_id: int, bureau_id: int, reason: str, actor: str) -> None:
        await self._uow.execute(INSERT_SHARE, incident_id, bureau_id, reason, actor)

    async def append_event(
        self,
        incident_id: int,
        kind: str,
        status: str,
        actor: str,
        note: str,
        data: dict[str, Any],
    ) -> EventRecord:
        row = await self._uow.fetchrow(
            INSERT_EVENT, incident_id, kind, status, status, actor, note, data
        )
        assert row is not None
        return EventRecord(**row)

    async def create_work_order(
        self, incident_id: int, bureau_id: int, order: NewWorkOrder, actor: str
    ) -> WorkOrderRecord:
        try:
            row = await self._uow.fetchrow(
                INSERT_WORK_ORDER,
                incident_id,
                bureau_id,
                order.crew,
                order.instructions,
                order.due_at,
                actor,
            )
        except asyncpg.PostgresError as error:
            raise translate(error) or error from None
        assert row is not None
        return WorkOrderRecord(**row)

    async def move_work_orders(
        self, incident_id: int, from_statuses: Sequence[str], to_status: str
    ) -> list[WorkOrderRecord]:
        rows = await self._uow.fetch(MOVE_WORK_ORDERS, incident_id, list(from_statuses), to_status)
        return [WorkOrderRecord(**row) for row in rows]

    async def finish_work_order(
        self, work_order_id: int, from_statuses: Sequence[str], to_status: str
    ) -> WorkOrderRecord | None:
        row = await self._uow.fetchrow(
            FINISH_WORK_ORDER, work_order_id, list(from_statuses), to_status
        )
        return WorkOrderRecord(**row) if row is not None else None

    async def record_transfer(
        self, incident_id: int, from_bureau_id: int, to_bureau_id: int, reason: str, actor: str
    ) -> TransferRecord:
        row = await self._uow.fetchrow(
            INSERT_TRANSFER, incident_id, from_bureau_id, to_bureau_id, reason, actor
        )
        assert row is not None
        return TransferRecord(**row)
