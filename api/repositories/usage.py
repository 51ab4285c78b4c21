"""Usage as licensees and the city read it: the records of metered requests, a page per licence
newest first, and the daily totals they are rolled up into (migration 0006).

Row-level security decides which rows a caller gets; this module only asks. Pages are keyset
pages on (finished_at, request_id), read for many licences in one statement (a lateral join per
licence), so a list of licences with their usage costs one statement, not one per licence.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime

from api.db.unit_of_work import UnitOfWork
from api.domain.errors import InvalidInput
from api.repositories.licensing import UsageRecord
from api.repositories.sql import Conditions, Ordering, Page, PageRequest, finish_page

USAGE_STATUSES = ("OK", "FAILED", "CANCELLED")
# The cursor's request id travels as text (JSON has no UUID); it is checked on the way in.
USAGE_NEWEST_FIRST = Ordering(
    "usage-newest-first", ("finished_at", "request_id"), descending=True, types=(datetime, str)
)


@dataclass(frozen=True, slots=True)
class UsageLine(UsageRecord):
    """One metered request, as recorded when it finished."""

    finished_at: datetime


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which records a page holds; hashable, so a loader can be keyed on it."""

    statuses: tuple[str, ...] | None = None
    finished_from: datetime | None = None  # inclusive
    finished_before: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class DailyTotal:
    licence_id: int
    day: date
    model: str
    status: str
    requests: int
    input_tokens: int
    output_tokens: int
    images: int


LINE_COLUMNS = ", ".join(f"u.{f.name}" for f in fields(UsageLine))
# {where} and {order} are filled from typed values only (Conditions numbers the parameters);
# $1 is the licences' ids, the page size is the last parameter.
RECORDS_PAGE = """
SELECT {columns}
FROM unnest($1::int[]) AS wanted(key)
CROSS JOIN LATERAL (
    SELECT * FROM usage_record
    WHERE licence_id = wanted.key AND {where}
    ORDER BY {order}
    LIMIT {limit}
) AS u
"""
DAILY_TOTALS = """
SELECT licence_id, day, model, status, requests, input_tokens, output_tokens, images
FROM usage_daily
WHERE licence_id = ANY($1::int[]) AND day BETWEEN $2 AND $3
ORDER BY licence_id, day, model, status
"""


def usage_key(request: PageRequest, field: str = "after") -> PageRequest:
    """``request`` with its cursor's request id as a UUID; a cursor whose id is not one was
    not issued here (InvalidInput, before any statement runs)."""
    if request.cursor is None:
        return request
    finished_at, request_id = request.cursor
    try:
        key = uuid.UUID(request_id)
    except ValueError:
        raise InvalidInput(field, "is not a cursor this API issued") from None
    return PageRequest(request.limit, (finished_at, key), request.backward)


class UsageRepository:
    """Usage records and daily totals, as row-level security lets the caller see them."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def pages(
        self, licence_ids: Sequence[int], where: UsageFilter, request: PageRequest
    ) -> dict[int, Page[UsageLine]]:
        """One page of each licence's records, newest first (every id gets a page)."""
        conditions = Conditions([list(licence_ids)])
        if where.statuses is not None:
            conditions.add("status = ANY({}::text[])", list(where.statuses))
        if where.finished_from is not None:
            conditions.add("finished_at >= {}", where.finished_from)
        if where.finished_before is not None:
            conditions.add("finished_at < {}", where.finished_before)
        if request.cursor is not None:
            # The plain bound lets the (licence_id, finished_at) index narrow the scan; the
            # row comparison then breaks ties on the request id.
            bound = (
                "finished_at >= {}"
                if USAGE_NEWEST_FIRST.descending == request.backward
                else "finished_at <= {}"
            )
            conditions.add(bound, request.cursor[0])
            USAGE_NEWEST_FIRST.after(conditions, request.cursor, request.backward)
        statement = RECORDS_PAGE.format(
            columns=LINE_COLUMNS,
            where=conditions.sql(),
            order=USAGE_NEWEST_FIRST.order_by(request.backward),
            limit=conditions.param(request.limit + 1),  # one more: is there a next page?
        )
        found: dict[int, list[UsageLine]] = {key: [] for key in licence_ids}
        for row in await self._uow.fetch(statement, *conditions.args):
            found[row["licence_id"]].append(UsageLine(**row))
        return {key: finish_page(rows, request) for key, rows in found.items()}

    async def daily(
        self, licence_ids: Sequence[int], first_day: date, last_day: date
    ) -> dict[int, list[DailyTotal]]:
        """Each licence's rolled-up totals from ``first_day`` to ``last_day``, both included."""
        found: dict[int, list[DailyTotal]] = {key: [] for key in licence_ids}
        for row in await self._uow.fetch(DAILY_TOTALS, list(licence_ids), first_day, last_day):
            found[row["licence_id"]].append(DailyTotal(**row))
        return found
