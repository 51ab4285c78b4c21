"""A licence's usage in the graph: its usage records as a Relay cursor connection (newest first,
keyset pages on finished time and request id) and its daily totals per model and status.

Both load through per-scope DataLoaders, so ``licences { usageRecords … }`` over the city's
whole register is one statement per field, not one per licence.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

import strawberry
from strawberry import relay

from api.domain.errors import InvalidInput
from api.graph.core.context import Info
from api.graph.licensing.loaders import DailyUsageOf, UsageRecordsOf
from api.repositories.sql import Page, encode_cursor, page_request
from api.repositories.usage import USAGE_NEWEST_FIRST, DailyTotal, UsageFilter, UsageLine, usage_key
from api.services.metering.usage import check_days

DEFAULT_DAYS = 31  # dailyUsage without from: the month up to today


@strawberry.enum(description="How a metered request ended; only OK requests are charged.")
class UsageStatus(Enum):
    OK = "OK"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@strawberry.type(description="One metered request, recorded when it finished.")
class UsageRecord:
    request_id: str
    client_id: str = strawberry.field(description="The licensee's client that called.")
    model: str
    purpose: str
    status: UsageStatus
    streamed: bool
    input_tokens: int
    output_tokens: int
    images: int
    latency_ms: int
    started_at: datetime
    finished_at: datetime
    period_start: datetime = strawberry.field(description="The quota period it was charged to.")

    @classmethod
    def from_line(cls, line: UsageLine) -> UsageRecord:
        return cls(
            request_id=str(line.request_id),
            client_id=line.client_id,
            model=line.model,
            purpose=line.purpose,
            status=UsageStatus(line.status),
            streamed=line.streamed,
            input_tokens=line.input_tokens,
            output_tokens=line.output_tokens,
            images=line.images,
            latency_ms=line.latency_ms,
            started_at=line.started_at,
            finished_at=line.finished_at,
            period_start=line.period_start,
        )


@strawberry.type
class UsageRecordEdge:
    cursor: str
    node: UsageRecord


@strawberry.type(description="A page of a licence's usage records, newest first.")
class UsageRecordConnection:
    edges: list[UsageRecordEdge]
    page_info: relay.PageInfo


@strawberry.type(description="A day's totals for one model and status (the city's time zone).")
class DailyUsage:
    day: date
    model: str
    status: UsageStatus
    requests: int
    input_tokens: int
    output_tokens: int
    images: int

    @classmethod
    def from_total(cls, total: DailyTotal) -> DailyUsage:
        return cls(
            day=total.day,
            model=total.model,
            status=UsageStatus(total.status),
            requests=total.requests,
            input_tokens=total.input_tokens,
            output_tokens=total.output_tokens,
            images=total.images,
        )


def _connection(page: Page[UsageLine]) -> UsageRecordConnection:
    def cursor(line: UsageLine) -> str:
        return encode_cursor(USAGE_NEWEST_FIRST, [line.finished_at, str(line.request_id)])

    items = page.items
    return UsageRecordConnection(
        edges=[
            UsageRecordEdge(cursor=cursor(line), node=UsageRecord.from_line(line)) for line in items
        ],
        page_info=relay.PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=cursor(items[0]) if items else None,
            end_cursor=cursor(items[-1]) if items else None,
        ),
    )


def _moment(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidInput(name, "must include a time zone offset")
    return value


async def usage_records(
    info: Info,
    licence_id: int,
    first: int | None,
    after: str | None,
    finished_from: datetime | None,
    finished_before: datetime | None,
    status: list[UsageStatus] | None,
) -> UsageRecordConnection:
    settings = info.context.resources.settings
    request = page_request(
        USAGE_NEWEST_FIRST,
        first=first,
        after=after,
        last=None,
        before=None,
        default_size=min(20, settings.graph.max_page_size),
        max_size=settings.graph.max_page_size,
    )
    where = UsageFilter(
        statuses=tuple(sorted({s.value for s in status})) if status is not None else None,
        finished_from=_moment("from", finished_from),
        finished_before=_moment("to", finished_before),
    )
    if (
        where.finished_from
        and where.finished_before
        and where.finished_from >= where.finished_before
    ):
        raise InvalidInput("to", "must come after from")
    page = await UsageRecordsOf.of(info, usage_key(request), where).load(licence_id)
    return _connection(page)


async def daily_usage(
    info: Info, licence_id: int, first_day: date | None, last_day: date | None
) -> list[DailyUsage]:
    zone = ZoneInfo(info.context.resources.settings.city.timezone)
    last = last_day or datetime.now(zone).date()
    first = first_day or last - timedelta(days=DEFAULT_DAYS - 1)
    check_days(first, last)  # before a loader is made for days nobody may ask for
    totals = await DailyUsageOf.of(info, first, last).load(licence_id)
    return [DailyUsage.from_total(total) for total in totals]
