"""Open311 GeoReport v2 in the city's terms: services are the routing table's categories, service
requests are incidents, and an incident's lifecycle reads as ``open``/``closed`` with the detail
in ``status_notes``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from api.domain.errors import InvalidInput
from api.domain.lifecycle import (
    STATUS_CLASS,
    ClosingReason,
    IncidentStatus,
    StatusClass,
)

OPEN, CLOSED = "open", "closed"
# GeoReport v2: "open" while the city is working on it; fixed and closed requests are "closed".
OPEN311_STATUS = {
    StatusClass.OPEN: OPEN,
    StatusClass.FIXED: CLOSED,
    StatusClass.CLOSED: CLOSED,
}
STATUS_NOTES = {
    IncidentStatus.DETECTED: "Detected (發現): found by the city's cameras, awaiting verification",
    IncidentStatus.VERIFIED: "Verified (通報): awaiting dispatch to a crew",
    IncidentStatus.DISPATCHED: "Dispatched (派工): a crew has been assigned",
    IncidentStatus.IN_PROGRESS: "In progress: the crew is at work",
    IncidentStatus.RESOLVED: "Resolved: the work is done, awaiting the bureau's check",
    IncidentStatus.CLOSED: "Closed (結案)",
}
CLOSING_NOTES = {
    ClosingReason.FIXED: "fixed",
    ClosingReason.FALSE_POSITIVE: "no problem was found",
    ClosingReason.DUPLICATE: "a duplicate of another request",
    ClosingReason.NOT_RESPONSIBLE: "not the city's responsibility",
    ClosingReason.TRANSFERRED: "handed to another body",
}
CASE_NUMBER = re.compile(r"^KH-(\d{1,12})$")
# The specification's defaults: requests of the last 90 days, at most 1000 of them.
DEFAULT_DAYS = 90
MAX_REQUESTS = 1000
MAX_IDS = 200


def case_number(incident_id: int) -> str:
    return f"KH-{incident_id:08d}"


def incident_id(service_request_id: str) -> int | None:
    """The incident a service request id names; None if it names none (``KH-00000042``)."""
    match = CASE_NUMBER.match(service_request_id.strip())
    return int(match.group(1)) if match else None


def statuses_for(open311_statuses: set[str]) -> list[str]:
    """The incident statuses that read as any of ``open311_statuses``."""
    return sorted(
        status.value
        for status, status_class in STATUS_CLASS.items()
        if OPEN311_STATUS[status_class] in open311_statuses
    )


def status_of(status: str) -> str:
    return OPEN311_STATUS[STATUS_CLASS[IncidentStatus(status)]]


def status_notes(status: str, closing_reason: str | None, duplicate_of_id: int | None) -> str:
    note = STATUS_NOTES[IncidentStatus(status)]
    if closing_reason is not None:
        note += f": {CLOSING_NOTES[ClosingReason(closing_reason)]}"
        if duplicate_of_id is not None:
            note += f" ({case_number(duplicate_of_id)})"
    return note


@dataclass(frozen=True, slots=True)
class Service:
    service_code: str
    service_name: str
    description: str
    group: str
    keywords: tuple[str, ...] = ()
    metadata: bool = False
    type: str = "realtime"


@dataclass(frozen=True, slots=True)
class ServiceRequest:
    service_request_id: str
    status: str
    status_notes: str
    service_name: str
    service_code: str
    description: str
    agency_responsible: str
    service_notice: str
    requested_datetime: datetime
    updated_datetime: datetime
    expected_datetime: datetime
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float
    long: float
    media_url: str | None


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """``GET requests``: by ids (the other filters then do not apply), or by service codes,
    status and the date range (the last 90 days by default), newest first."""

    ids: tuple[int, ...] | None = None
    service_codes: tuple[str, ...] | None = None
    statuses: frozenset[str] | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    """``POST requests``, its parameters checked for shape (the service checks the rest)."""

    service_code: str
    lat: float
    long: float
    address: str | None = None
    description: str = ""
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    media_url: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def reporter_name(self) -> str | None:
        name = " ".join(part.strip() for part in (self.first_name, self.last_name) if part)
        return name or None

    def reporter_note(self) -> str | None:
        """What else identifies the reporter (personal data, kept with the name and phone)."""
        parts = [
            f"{label}: {value}"
            for label, value in (
                ("device_id", self.device_id),
                ("account_id", self.account_id),
                ("media_url", self.media_url),
            )
            if value
        ]
        return "; ".join(parts) or None


def require_window(start: datetime | None, end: datetime | None) -> None:
    for name, value in (("start_date", start), ("end_date", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(name, "must include a time zone offset (W3C date and time)")
    if start is not None and end is not None and end < start:
        raise InvalidInput("end_date", "is before start_date")
