"""Usage and the register of licensees as the graph reads them: a licensee its own company's,
the city all (``licensing.view.*``).

Cedar decides per licence (``ViewLicence``) or company (``ViewLicensee``); row-level security
returns only the rows the same rules allow, so a licence Cedar refuses has no usage to show and a
row the database hides never reaches Cedar. Everything returned is noted for the audit record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from api.access.scope import AccessScope
from api.domain.errors import InvalidInput
from api.policy import resources
from api.repositories.licensees import LicenseeRegister
from api.repositories.licensing import LicenseeRecord, LicensingRepository
from api.repositories.sql import Page, PageRequest
from api.repositories.usage import DailyTotal, UsageFilter, UsageLine, UsageRepository

MAX_LICENSEES = 500  # the city's whole register, in one answer
MAX_DAYS = 366  # daily totals: a year per licence at most (days x models x statuses rows)


def check_days(first_day: date, last_day: date) -> None:
    """InvalidInput unless the days run forward and span at most ``MAX_DAYS``."""
    if last_day < first_day:
        raise InvalidInput("to", "comes before from")
    if last_day - first_day >= timedelta(days=MAX_DAYS):
        raise InvalidInput("to", f"ask for at most {MAX_DAYS} days at once")


class UsageReads:
    def __init__(self, access: AccessScope) -> None:
        self._access = access

    async def _visible(self, licence_ids: Sequence[int]) -> list[int]:
        """The licences of ``licence_ids`` the caller may see the usage of (RLS, then Cedar)."""
        access = self._access
        found = await LicensingRepository(access.uow).licences(list(dict.fromkeys(licence_ids)))
        licences = list(found.values())
        decisions = access.authorizer.decide_many(
            "ViewLicence", [resources.licence_entity(lic.id, lic.licensee_id) for lic in licences]
        )
        return [
            lic.id for lic, decision in zip(licences, decisions, strict=True) if decision.allowed
        ]

    async def record_pages(
        self, licence_ids: Sequence[int], where: UsageFilter, request: PageRequest
    ) -> dict[int, Page[UsageLine]]:
        """A page of each licence's usage records, newest first; an empty page for a licence the
        caller may not see."""
        visible = await self._visible(licence_ids)
        pages = (
            await UsageRepository(self._access.uow).pages(visible, where, request)
            if visible
            else {}
        )
        self._access.audit.saw(
            "UsageRecord", [line.request_id for page in pages.values() for line in page.items]
        )
        empty: Page[UsageLine] = Page([], has_next=False, has_previous=request.cursor is not None)
        return {key: pages.get(key, empty) for key in licence_ids}

    async def daily_totals(
        self, licence_ids: Sequence[int], first_day: date, last_day: date
    ) -> dict[int, list[DailyTotal]]:
        """Each licence's daily totals (per day, model and status) from ``first_day`` to
        ``last_day``, both included; none for a licence the caller may not see."""
        check_days(first_day, last_day)
        visible = await self._visible(licence_ids)
        totals: dict[int, list[DailyTotal]] = {}
        if visible:
            totals = await UsageRepository(self._access.uow).daily(visible, first_day, last_day)
        self._access.audit.saw("LicenceUsage", [key for key, rows in totals.items() if rows])
        return {key: totals.get(key, []) for key in licence_ids}


class LicenseeReads:
    def __init__(self, access: AccessScope) -> None:
        self._access = access

    async def licensees(self) -> list[LicenseeRecord]:
        """The licensees the caller may see: a licensee's client its own company, the city's
        officers and usage readers all (at most ``MAX_LICENSEES``, by code)."""
        access = self._access
        principal = access.principal
        if principal.licensee_id is not None:
            found = await LicensingRepository(access.uow).licensees([principal.licensee_id])
            records = list(found.values())
        else:
            records = await LicenseeRegister(access.uow).visible(MAX_LICENSEES)
        decisions = access.authorizer.decide_many(
            "ViewLicensee", [resources.company(record.id) for record in records]
        )
        visible = [r for r, decision in zip(records, decisions, strict=True) if decision.allowed]
        access.audit.saw("Licensee", [record.id for record in visible])
        return visible
