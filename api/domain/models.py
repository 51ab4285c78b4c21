"""What the repositories return: plain, immutable records of the domain."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from enum import StrEnum
from typing import Any


def columns(record_type: type, alias: str | None = None) -> str:
    """The SELECT list for a record type, optionally qualified by a table alias."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + field.name for field in fields(record_type))


class BureauKind(StrEnum):
    CITY_BUREAU = "CITY_BUREAU"
    COMMISSION = "COMMISSION"
    STATE_ENTERPRISE = "STATE_ENTERPRISE"


class AssetKind(StrEnum):
    CAMERA = "CAMERA"
    STREET_LIGHT = "STREET_LIGHT"
    ROAD_SEGMENT = "ROAD_SEGMENT"
    DRAIN = "DRAIN"
    TRAFFIC_SIGNAL = "TRAFFIC_SIGNAL"
    PUMPING_STATION = "PUMPING_STATION"
    STREET_TREE = "STREET_TREE"
    UTILITY_POLE = "UTILITY_POLE"
    HYDRANT = "HYDRANT"


@dataclass(frozen=True, slots=True)
class BureauRecord:
    id: int
    code: str
    name_zh: str
    name_en: str
    kind: str
    joint_service_centre: bool


@dataclass(frozen=True, slots=True)
class CategoryRecord:
    code: str
    name_zh: str
    name_en: str
    responsible_bureau_id: int
    sla_working_days: int | None
    sla_hours: int | None


@dataclass(frozen=True, slots=True)
class AssetRecord:
    id: int
    code: str
    kind: str
    name: str
    bureau_id: int
    latitude: float
    longitude: float
    installed_on: date | None
    created_at: datetime
    created_by: str
    coverage_meters: float | None  # how far a camera sees (model quality counts its misses)


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    id: int
    title: str
    description: str
    category: str
    status: str
    closing_reason: str | None
    source: str
    responsible_bureau_id: int
    reporting_bureau_id: int | None
    asset_id: int | None
    latitude: float
    longitude: float
    reported_at: datetime
    due_at: datetime
    closed_at: datetime | None
    duplicate_of_id: int | None
    version: int
    created_at: datetime
    updated_at: datetime
    created_by: str
    involved_bureau_ids: list[int]

    @property
    def case_number(self) -> str:
        return f"KH-{self.id:08d}"


@dataclass(frozen=True, slots=True)
class ReporterRecord:
    """Personal data: who reported an incident."""

    incident_id: int
    name: str | None
    phone: str | None
    email: str | None
    personal_note: str | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    incident_id: int
    kind: str
    from_status: str | None
    to_status: str | None
    actor: str
    note: str
    data: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class WorkOrderRecord:
    id: int
    incident_id: int
    bureau_id: int
    status: str
    crew: str
    instructions: str
    due_at: datetime | None
    created_at: datetime
    created_by: str
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class TransferRecord:
    id: int
    incident_id: int
    from_bureau_id: int
    to_bureau_id: int
    reason: str
    actor: str
    transferred_at: datetime


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What the visibility rules judge an incident by, from the facts as recorded."""

    incident_id: int
    responsible_bureau: str
    reporting_bureau: str | None
    asset_bureau: str | None
    held_by: frozenset[str]
    shared_with: frozenset[str]
