"""Reporting (通報): a new incident, routed to the bureau responsible for its category."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.domain.errors import InvalidInput, NotFound
from api.domain.geo import Wgs84Point
from api.domain.lifecycle import INITIAL_STATUS, IncidentSource
from api.domain.models import AssetRecord, CategoryRecord, IncidentRecord
from api.domain.sla import ServiceLevel
from api.policy import resources
from api.repositories.incidents import NewIncident
from api.services.idempotency import once
from api.services.incidents.common import IncidentCommand, optional_text, payload, text

MAX_CLOCK_SKEW = timedelta(minutes=5)
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+?[0-9 ()#-]{3,40}$")


@dataclass(frozen=True, slots=True)
class IncidentReport:
    title: str
    category: str
    source: IncidentSource
    description: str = ""
    location: Wgs84Point | None = None
    asset_id: int | None = None
    reported_at: datetime | None = None
    reporter_name: str | None = None
    reporter_phone: str | None = None
    reporter_email: str | None = None
    reporter_note: str | None = None


class IncidentReporting(IncidentCommand):
    async def report(
        self, report: IncidentReport, idempotency_key: str | None
    ) -> tuple[IncidentRecord, bool]:
        """Record a new incident, routed to the bureau responsible for its category."""
        self._authorizer.require("CreateIncident", resources.INCIDENTS)
        async with self._uow.savepoint():
            return await once(
                self._keys,
                subject=self._actor,
                key=idempotency_key,
                operation="createIncident",
                payload=payload(report),
                create=lambda: self._create(report),
                replay=self.incidents.get,
            )

    async def report_many(self, reports: Sequence[IncidentReport]) -> list[IncidentRecord]:
        """Many new incidents at once (a vision worker's batch), each routed as ``report``
        routes one; no idempotency keys (the caller's own records make a retry harmless)."""
        self._authorizer.require("CreateIncident", resources.INCIDENTS)
        if not reports:
            return []
        categories = await self._bureaus.categories_by_code(sorted({r.category for r in reports}))
        asset_ids = sorted({r.asset_id for r in reports if r.asset_id is not None})
        assets = await self._assets.by_ids(asset_ids) if asset_ids else {}
        prepared = [self._prepare(report, categories, assets) for report in reports]
        async with self._uow.savepoint():
            return await self.incidents.create_many(prepared, self._actor)

    async def _create(self, report: IncidentReport) -> tuple[IncidentRecord, int]:
        categories = await self._bureaus.categories_by_code([report.category])
        assets = await self._assets.by_ids([report.asset_id]) if report.asset_id else {}
        record = await self.incidents.create(self._prepare(report, categories, assets), self._actor)
        return record, record.id

    def _prepare(
        self,
        report: IncidentReport,
        categories: Mapping[str, CategoryRecord],
        assets: Mapping[int, AssetRecord],
    ) -> NewIncident:
        """The incident a report makes, checked and routed (``InvalidInput``/``NotFound``)."""
        title = text("title", report.title, required=True, limit=200)
        description = text("description", report.description, required=False, limit=10_000)
        try:
            source = IncidentSource(report.source)
        except ValueError:
            raise InvalidInput(
                "source", f"must be one of {', '.join(s.value for s in IncidentSource)}"
            ) from None
        reporter_email = optional_text("reporter.email", report.reporter_email, 320)
        if reporter_email is not None and not EMAIL.match(reporter_email):
            raise InvalidInput("reporter.email", "is not an e-mail address")
        reporter_phone = optional_text("reporter.phone", report.reporter_phone, 40)
        if reporter_phone is not None and not PHONE.match(reporter_phone):
            raise InvalidInput("reporter.phone", "is not a telephone number")
        now = datetime.now(UTC)
        reported_at = report.reported_at or now
        if reported_at.tzinfo is None:
            raise InvalidInput("reportedAt", "must include a time zone offset")
        if reported_at > now + MAX_CLOCK_SKEW:
            raise InvalidInput("reportedAt", "is in the future")
        category = categories.get(report.category)
        if category is None:
            raise InvalidInput("category", f"unknown category {report.category!r}")
        location = report.location
        involved = {self._principal.bureau_id}
        if report.asset_id is not None:
            asset = assets.get(report.asset_id)
            if asset is None:
                raise NotFound("asset", report.asset_id)
            involved.add(asset.bureau_id)
            if location is None:
                location = Wgs84Point(asset.latitude, asset.longitude)
        if location is None:
            raise InvalidInput("location", "give a location or an asset")
        level = ServiceLevel(category.sla_working_days, category.sla_hours)
        return NewIncident(
            title=title,
            description=description,
            category=category.code,
            status=INITIAL_STATUS[source],
            source=source.value,
            responsible_bureau_id=category.responsible_bureau_id,
            reporting_bureau_id=self._principal.bureau_id,
            asset_id=report.asset_id,
            latitude=location.latitude,
            longitude=location.longitude,
            reporter_name=optional_text("reporter.name", report.reporter_name, 200),
            reporter_phone=reporter_phone,
            reporter_email=reporter_email,
            reporter_note=optional_text("reporter.personalNote", report.reporter_note, 4000),
            reported_at=reported_at,
            due_at=self._calendar.due_at(reported_at, level),
            involved_bureau_ids=tuple(
                sorted(b for b in involved if b is not None and b != category.responsible_bureau_id)
            ),
        )
