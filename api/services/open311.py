"""Open311 GeoReport v2 over incidents, for the graph's callers' rules: what a client may read
is what the graph would show it (the same policies, row-level security and audit record), and
what it submits is reported as the graph reports an incident (routed by category, with an SLA
due date).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from api.access.scope import AccessScope
from api.domain import open311
from api.domain.errors import Forbidden, InvalidInput, NotFound
from api.domain.geo import validate_wgs84
from api.domain.lifecycle import IncidentSource
from api.domain.models import BureauRecord, CategoryRecord, IncidentRecord
from api.domain.open311 import RequestQuery, Service, ServiceRequest, Submission
from api.domain.sla import SlaCalendar
from api.policy import resources
from api.repositories.bureaus import BureauRepository
from api.repositories.idempotency import IdempotencyRepository
from api.repositories.incidents import NEWEST_FIRST, IncidentFilter
from api.repositories.open311 import Open311Requests
from api.repositories.sql import PageRequest
from api.services.idempotency import once
from api.services.incidents.reads import IncidentReads
from api.services.incidents.reporting import IncidentReport, IncidentReporting
from api.services.vision.reads import VisionReads

CLIENT_PREFIX = "open311:"
SERVICE_NOTICE = "Routed to {bureau}; expected by {due:%Y-%m-%d %H:%M} ({zone})."
SUBMIT_OPERATION = "open311.submitRequest"
MAX_WINDOW = timedelta(days=open311.DEFAULT_DAYS)


def window(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime | None]:
    """The reported-at range ``GET requests`` reads (from, up to and including), never more
    than 90 days whichever bounds were sent: the last 90 days; 90 days from ``start_date`` (up
    to now); 90 days up to ``end_date``; or the two, if they are at most 90 days apart. None
    for an upper bound is now (and an incident reported a moment ahead by a skewed clock)."""
    open311.require_window(start, end)
    if start is not None and end is not None:
        if end - start > MAX_WINDOW:
            raise InvalidInput(
                "end_date",
                f"is more than {open311.DEFAULT_DAYS} days after start_date: the range from "
                f"start_date to end_date may span at most {open311.DEFAULT_DAYS} days",
            )
        return start, end
    if end is not None:
        return end - MAX_WINDOW, end
    if start is not None:
        return start, start + MAX_WINDOW if start + MAX_WINDOW < now else None
    return now - MAX_WINDOW, None


class Open311Desk:
    def __init__(
        self,
        access: AccessScope,
        calendar: SlaCalendar,
        key_ttl_hours: int,
        timezone: str,
        media_base: str,
    ) -> None:
        self._access = access
        self._calendar = calendar
        self._key_ttl_hours = key_ttl_hours
        self._zone = ZoneInfo(timezone)
        self._media_base = media_base.rstrip("/")
        self._bureaus = BureauRepository(access.uow)
        self._requests = Open311Requests(access.uow)

    # --- services -----------------------------------------------------------------------------

    async def services(self, english: bool) -> list[Service]:
        categories = await self._bureaus.categories()
        bureaus = await self._bureaus.by_ids(sorted({c.responsible_bureau_id for c in categories}))
        return [self._service(c, bureaus[c.responsible_bureau_id], english) for c in categories]

    async def service(self, code: str, english: bool) -> Service:
        category = (await self._bureaus.categories_by_code([code])).get(code)
        if category is None:
            raise NotFound("service_code", code)
        bureau = (await self._bureaus.by_ids([category.responsible_bureau_id]))[
            category.responsible_bureau_id
        ]
        return self._service(category, bureau, english)

    @staticmethod
    def _service(category: CategoryRecord, bureau: BureauRecord, english: bool) -> Service:
        name, other = (
            (category.name_en, category.name_zh)
            if english
            else (category.name_zh, category.name_en)
        )
        return Service(
            service_code=category.code,
            service_name=name,
            description=f"{other}. Handled by {bureau.name_en if english else bureau.name_zh}.",
            group=bureau.name_en if english else bureau.name_zh,
            keywords=(category.code.lower().replace("_", " "), category.name_zh, category.name_en),
        )

    # --- requests -----------------------------------------------------------------------------

    async def requests(self, query: RequestQuery, english: bool) -> list[ServiceRequest]:
        reads = IncidentReads(self._access)
        if query.ids is not None:
            found = await reads.by_ids(query.ids)
            records = [found[i] for i in dict.fromkeys(query.ids) if i in found]
        else:
            start, end = window(query.start, query.end, datetime.now(UTC))
            where = IncidentFilter(
                categories=list(query.service_codes) if query.service_codes else None,
                statuses=open311.statuses_for(set(query.statuses)) if query.statuses else None,
                reported_from=start,
                reported_before=end + timedelta(microseconds=1) if end is not None else None,
            )
            page = await reads.page(
                where, NEWEST_FIRST, PageRequest(open311.MAX_REQUESTS, None, backward=False)
            )
            records = page.items
        return await self._views(records, english)

    async def request(self, service_request_id: str, english: bool) -> ServiceRequest:
        incident_id = open311.incident_id(service_request_id)
        if incident_id is not None:
            found = await IncidentReads(self._access).by_ids([incident_id])
            if incident_id in found:
                return (await self._views([found[incident_id]], english))[0]
        raise NotFound("service_request_id", service_request_id)

    async def token(self, token: str) -> tuple[str, str]:
        """The service request a token was given for: (service_request_id, token)."""
        try:
            parsed = uuid.UUID(token)
        except ValueError:
            raise NotFound("token", token) from None
        self._access.authorize("ListIncidents", resources.INCIDENTS)
        incident_id = await self._requests.by_token(parsed)
        if incident_id is None:
            raise NotFound("token", token)
        self._access.audit.saw("Incident", [incident_id])
        return open311.case_number(incident_id), str(parsed)

    async def _views(
        self, records: Sequence[IncidentRecord], english: bool
    ) -> list[ServiceRequest]:
        if not records:
            return []
        ids = [record.id for record in records]
        categories = await self._bureaus.categories_by_code(sorted({r.category for r in records}))
        bureaus = await self._bureaus.by_ids(sorted({r.responsible_bureau_id for r in records}))
        submitted = await self._requests.of(ids)
        media = await self._media(ids)
        views = []
        for record in records:
            category = categories[record.category]
            bureau = bureaus[record.responsible_bureau_id]
            extra = submitted.get(record.id)
            views.append(
                ServiceRequest(
                    service_request_id=record.case_number,
                    status=open311.status_of(record.status),
                    status_notes=open311.status_notes(
                        record.status, record.closing_reason, record.duplicate_of_id
                    ),
                    service_name=category.name_en if english else category.name_zh,
                    service_code=record.category,
                    description=record.description,
                    agency_responsible=bureau.name_en if english else bureau.name_zh,
                    service_notice=self._notice(bureau, record.due_at, english),
                    requested_datetime=record.reported_at,
                    updated_datetime=record.updated_at,
                    expected_datetime=record.due_at,
                    address=extra.address if extra is not None else None,
                    address_id=None,
                    zipcode=None,
                    lat=record.latitude,
                    long=record.longitude,
                    media_url=media.get(record.id),
                )
            )
        return views

    def _notice(self, bureau: BureauRecord, due: datetime, english: bool) -> str:
        return SERVICE_NOTICE.format(
            bureau=bureau.name_en if english else bureau.name_zh,
            due=due.astimezone(self._zone),
            zone=self._zone.key,
        )

    async def _media(self, incident_ids: Sequence[int]) -> dict[int, str]:
        """The evidence frame of each incident whose image the caller may see (the rule
        ``GET /frames/{sha256}`` applies: the frame's bureau's image viewers, or those who may
        see the incident's personal data)."""
        vision = VisionReads(self._access)
        detections = await vision.detections_of_incidents(incident_ids)
        evidence = {i: found[0] for i, found in detections.items() if found}
        if not evidence:
            return {}
        authorizer = self._access.authorizer
        facts = await IncidentReads(self._access).facts(sorted(evidence))
        frame_bureaus = await self._bureaus.by_ids(sorted({d.bureau_id for d in evidence.values()}))
        urls = {}
        for incident_id, detection in evidence.items():
            allowed = authorizer.decide(
                "ViewFrameImage", resources.bureau(frame_bureaus[detection.bureau_id].code)
            ).allowed
            if not allowed and incident_id in facts:
                allowed = authorizer.decide(
                    "ViewPersonalData", resources.incident_entity(facts[incident_id])
                ).allowed
            if allowed:
                urls[incident_id] = f"{self._media_base}/frames/{detection.frame_sha256.hex()}"
        return urls

    # --- submitting ---------------------------------------------------------------------------

    async def submit(
        self,
        submission: Submission,
        parameters: Mapping[str, str],
        idempotency_key: str | None,
        english: bool,
    ) -> tuple[str, str, str, bool]:
        """Report ``submission`` as an incident for the client whose key the caller holds:
        (service_request_id, token, service_notice, replayed). ``parameters`` are all those
        the request sent (``submission`` read from them): a retry with the same idempotency key
        and the same parameters answers what the first did (replayed); a request with any
        parameter changed under a used key is refused (``IdempotencyKeyReused``)."""
        client_id = self._client_id()
        location = validate_wgs84(submission.lat, submission.long, "location")
        category = (await self._bureaus.categories_by_code([submission.service_code])).get(
            submission.service_code
        )
        if category is None:
            raise NotFound("service_code", submission.service_code)
        description = submission.description.strip()
        if len(description) > 4000:
            raise InvalidInput("description", "must be at most 4000 characters")
        title = f"{category.name_zh}: {description}" if description else category.name_zh
        report = IncidentReport(
            title=title[:200],
            category=category.code,
            source=IncidentSource.CITIZEN_1999,
            description=description,
            location=location,
            reporter_name=submission.reporter_name(),
            reporter_phone=submission.phone,
            reporter_email=submission.email,
            reporter_note=submission.reporter_note(),
        )
        reporting = IncidentReporting(self._access, self._calendar, self._key_ttl_hours)

        async def create() -> tuple[tuple[IncidentRecord, uuid.UUID], int]:
            record, _ = await reporting.report(report, None)
            token = uuid.uuid4()
            await self._requests.record(record.id, token, client_id, submission.address)
            return (record, token), record.id

        async def replay(incident_id: int) -> tuple[IncidentRecord, uuid.UUID]:
            record = await reporting.incidents.get(incident_id)
            return record, (await self._requests.of([incident_id]))[incident_id].token

        # The key, the incident and its request row are kept together or not at all.
        async with self._access.uow.savepoint():
            (record, token), replayed = await once(
                IdempotencyRepository(self._access.uow, self._key_ttl_hours),
                subject=self._access.principal.subject,
                key=idempotency_key,
                operation=SUBMIT_OPERATION,
                payload=dict(parameters),
                create=create,
                replay=replay,
            )
        bureau = (await self._bureaus.by_ids([record.responsible_bureau_id]))[
            record.responsible_bureau_id
        ]
        notice = self._notice(bureau, record.due_at, english)
        return record.case_number, str(token), notice, replayed

    def _client_id(self) -> int:
        subject = self._access.principal.subject
        if not subject.startswith(CLIENT_PREFIX):
            raise Forbidden(
                "submitting a service request needs the api_key the city issued your app"
            )
        return int(subject.removeprefix(CLIENT_PREFIX))
