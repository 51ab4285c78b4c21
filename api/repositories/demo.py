"""Bulk loading of demo data, as the schema owner (COPY, then identity sequences moved on)."""

from __future__ import annotations

import asyncpg

from api.domain.sla import ServiceLevel
from api.seed.demo import (
    ASSET_COLUMNS,
    EVENT_COLUMNS,
    INCIDENT_COLUMNS,
    REPORTER_COLUMNS,
    TRANSFER_COLUMNS,
    WORK_ORDER_COLUMNS,
    DemoData,
    IdStart,
)

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
# them for this one transaction only.
RESET = """
ALTER TABLE lighthouse.incident_event DISABLE TRIGGER incident_event_no_truncate;
TRUNCATE lighthouse.incident_transfer, lighthouse.work_order, lighthouse.incident_event,
         lighthouse.incident_share, lighthouse.incident_reporter, lighthouse.incident,
         lighthouse.asset, lighthouse.idempotency_key;
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
