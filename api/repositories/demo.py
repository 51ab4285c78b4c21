"""Bulk loading of demo data, as the schema owner (COPY, then identity sequences moved on)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from api.domain.sla import ServiceLevel


# The rows the seeder generates, in the column order they are copied in.
@dataclass
class DemoData:
    assets: list[tuple[Any, ...]] = field(default_factory=list)
    incidents: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    work_orders: list[tuple[Any, ...]] = field(default_factory=list)
    transfers: list[tuple[Any, ...]] = field(default_factory=list)
    reporters: list[tuple[Any, ...]] = field(default_factory=list)


ASSET_COLUMNS = (
    "id", "code", "kind", "name", "bureau_id", "latitude", "longitude", "installed_on",
    "created_at", "created_by", "coverage_meters",
)  # fmt: skip
INCIDENT_COLUMNS = (
    "id", "title", "description", "category", "status", "closing_reason", "source",
    "responsible_bureau_id", "reporting_bureau_id", "asset_id", "latitude", "longitude",
    "reported_at", "due_at", "closed_at", "duplicate_of_id", "version", "created_at",
    "updated_at", "created_by", "involved_bureau_ids",
)  # fmt: skip
REPORTER_COLUMNS = ("incident_id", "name", "phone", "email", "personal_note")
EVENT_COLUMNS = (
    "id", "incident_id", "kind", "from_status", "to_status", "actor", "note", "data", "occurred_at",
)  # fmt: skip
WORK_ORDER_COLUMNS = (
    "id", "incident_id", "bureau_id", "status", "crew", "instructions", "due_at", "created_at",
    "created_by", "finished_at",
)  # fmt: skip
TRANSFER_COLUMNS = (
    "id", "incident_id", "from_bureau_id", "to_bureau_id", "reason", "actor", "transferred_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class IdStart:
    asset: int
    incident: int
    event: int
    work_order: int
    transfer: int


BUREAU_CODES = "SELECT code, id FROM lighthouse.bureau"
CATEGORIES = "SELECT code, responsible_bureau_id, sla_working_days, sla_hours FROM lighthouse.incident_category"
NEXT_IDS = """
SELECT (SELECT coalesce(max(id), 0) + 1 FROM lighthouse.asset) AS asset,
       (SELECT coalesce(max(id), 0) + 1 FROM lighthouse.incident) AS incident,
       (SELECT coalesce(max(id), 0) + 1 FROM lighthouse.incident_event) AS event,
       (SELECT coalesce(max(id), 0) + 1 FROM lighthouse.work_order) AS work_order,
       (SELECT coalesce(max(id), 0) + 1 FROM lighthouse.incident_transfer) AS transfer
"""
COUNT_INCIDENTS = "SELECT count(*) FROM lighthouse.incident"
TABLES = (
    "asset",
    "incident",
    "incident_event",
    "work_order",
    "incident_transfer",
    "incident_reporter",
)
# The demo reset wipes history, which the append-only triggers exist to prevent; the owner lifts
# them for this one transaction only. Camera frames go with the cameras (assets) they came from
# (their image files stay in the frame store, which keeps files by content).
RESET = """
ALTER TABLE lighthouse.incident_event DISABLE TRIGGER incident_event_no_truncate;
TRUNCATE lighthouse.incident_transfer, lighthouse.work_order, lighthouse.incident_event,
         lighthouse.incident_share, lighthouse.incident_reporter, lighthouse.detection_review,
         lighthouse.detection, lighthouse.evaluation_answer, lighthouse.evaluation_item,
         lighthouse.model_card, lighthouse.evaluation_run, lighthouse.evaluation_set,
         lighthouse.frame_analysis, lighthouse.frame, lighthouse.open311_request,
         lighthouse.incident, lighthouse.asset, lighthouse.idempotency_key;
ALTER TABLE lighthouse.incident_event ENABLE TRIGGER incident_event_no_truncate;
"""
RESYNC_IDENTITY = """
SELECT setval(pg_get_serial_sequence('lighthouse.{table}', 'id'),
              (SELECT coalesce(max(id), 1) FROM lighthouse.{table}),
              (SELECT count(*) > 0 FROM lighthouse.{table}))
"""


class DemoDataRepository:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def bureaus(self) -> dict[str, int]:
        return {row["code"]: row["id"] for row in await self._connection.fetch(BUREAU_CODES)}

    async def categories(self) -> dict[str, tuple[int, ServiceLevel]]:
        rows = await self._connection.fetch(CATEGORIES)
        return {
            row["code"]: (
                row["responsible_bureau_id"],
                ServiceLevel(row["sla_working_days"], row["sla_hours"]),
            )
            for row in rows
        }

    async def next_ids(self) -> IdStart:
        row = await self._connection.fetchrow(NEXT_IDS)
        assert row is not None
        return IdStart(**dict(row))

    async def incident_count(self) -> int:
        return int(await self._connection.fetchval(COUNT_INCIDENTS))

    async def reset(self) -> None:
        await self._connection.execute(RESET)

    async def load(self, data: DemoData, table: str) -> int:
        rows, columns = {
            "asset": (data.assets, ASSET_COLUMNS),
            "incident": (data.incidents, INCIDENT_COLUMNS),
            "incident_event": (data.events, EVENT_COLUMNS),
            "work_order": (data.work_orders, WORK_ORDER_COLUMNS),
            "incident_transfer": (data.transfers, TRANSFER_COLUMNS),
            "incident_reporter": (data.reporters, REPORTER_COLUMNS),
        }[table]
        if rows:
            await self._connection.copy_records_to_table(
                table, records=rows, columns=list(columns), schema_name="lighthouse"
            )
        if "id" in columns:
            await self._connection.execute(RESYNC_IDENTITY.format(table=table))
        return len(rows)
