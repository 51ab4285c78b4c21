"""A licence's statement for one quota period: every request charged to the period (failed and
abandoned ones at zero) and a total line, as CSV, with its totals checked against the quota
ledger to the unit. ``lighthouse licensing statement`` and ``GET /v1/usage/statement`` both
build it here, so the officer's copy and the licensee's are the same document.

Who may have one is decided as for the licence itself (``licensing.view.*``): a licensee its own
company's licences, the city all of them; row-level security hides the others' altogether.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from api.access.scope import AccessScope
from api.domain.errors import InvalidInput, NotFound
from api.domain.licensing import Licence, QuotaPeriod, Usage
from api.policy import resources
from api.repositories.licensing import (
    LicensingRepository,
    QuotaLedger,
    StatementLine,
    UsageRecords,
)

STATEMENT_COLUMNS = (
    "request_id", "finished_at", "client_id", "model", "purpose", "status", "streamed",
    "input_tokens", "output_tokens", "images", "latency_ms",
)  # fmt: skip
# (requests charged, input tokens, output tokens, images)
Totals = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Statement:
    licence: Licence
    period: str  # as asked: YYYY-MM, or YYYY-MM-DD for a daily licence
    period_start: datetime
    lines: list[StatementLine]
    ledger: Totals  # what the quota ledger charged the period

    @property
    def totals(self) -> Totals:
        return (
            sum(1 for line in self.lines if line.status == "OK"),
            sum(line.input_tokens for line in self.lines),
            sum(line.output_tokens for line in self.lines),
            sum(line.images for line in self.lines),
        )

    @property
    def agrees(self) -> bool:
        """Whether the records add up to what the ledger charged, to the unit. A statement that
        does not must not go out: one of the two is wrong, and the bill would say so."""
        return self.totals == self.ledger

    def csv(self, zone: ZoneInfo) -> str:
        """The statement as CSV: a header, one line per request (times in ``zone``), a total."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(STATEMENT_COLUMNS)
        for line in self.lines:
            writer.writerow(
                (
                    line.request_id, line.finished_at.astimezone(zone).isoformat(),
                    line.client_id, line.model, line.purpose, line.status,
                    str(line.streamed).lower(), line.input_tokens, line.output_tokens,
                    line.images, line.latency_ms,
                )
            )  # fmt: skip
        charged, *amounts = self.totals
        writer.writerow(("TOTAL", "", "", "", "", f"{charged} charged", "", *amounts, ""))
        return out.getvalue()


def period_start(licence: Licence, period: str, zone: ZoneInfo) -> datetime:
    """The start of the licence's quota period written ``period`` (YYYY-MM for a monthly
    licence, YYYY-MM-DD for a daily one), in the city's time zone."""
    monthly = licence.quota_period is QuotaPeriod.MONTH
    shape, written = ("%Y-%m", "YYYY-MM") if monthly else ("%Y-%m-%d", "YYYY-MM-DD")
    try:
        return datetime.strptime(period, shape).replace(tzinfo=zone)
    except ValueError:
        raise InvalidInput(
            "period", f"{licence.code} counts by {licence.quota_period.lower()}: write {written}"
        ) from None


def _ledger(usage: Usage | None) -> Totals:
    if usage is None:  # nothing was ever admitted in the period
        return (0, 0, 0, 0)
    used = usage.used
    return (usage.used_requests, used.input_tokens, used.output_tokens, used.images)


async def statement(access: AccessScope, code: str, period: str, zone: str) -> Statement:
    """The statement of licence ``code`` for ``period``: NotFound if the caller may not see the
    licence (whether or not it exists), InvalidInput for a period not written as the licence
    counts."""
    if not code.strip():
        raise InvalidInput("licence", "name the licence by its code, e.g. LIC-2027-0001")
    access.audit.targeted("Licence", code)
    licence = await LicensingRepository(access.uow).licence_by_code(code)
    if licence is None:
        raise NotFound("licence", code)
    access.authorize("ViewLicence", resources.licence_entity(licence.id, licence.licensee_id))
    start = period_start(licence, period, ZoneInfo(zone))
    lines = await UsageRecords(access.uow).statement(licence.id, start)
    usage = await QuotaLedger(access.uow, zone).usage(licence.id, start)
    access.audit.saw("Licence", licence.id)
    # A month can hold many thousands of requests: the record names the statement, not each id.
    access.audit.notes.append(f"statement {licence.code} {period}: {len(lines)} requests")
    return Statement(licence, period, start, lines, _ledger(usage))
