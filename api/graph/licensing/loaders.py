"""Per-scope DataLoaders for licences' usage: every licence of a list is read in one statement
per field and arguments, however long the list.

A loader's arguments (page size, cursor, filter; or the days) make it a loader of its own, so
two selections of ``usageRecords`` with different arguments never share a batch or a cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from api.access.scope import AccessScope
from api.graph.core.loaders import ScopedLoader
from api.repositories.model_cards import LicensedVersion
from api.repositories.sql import Page, PageRequest
from api.repositories.usage import DailyTotal, UsageFilter, UsageLine
from api.services.metering.licences import licensed_versions
from api.services.metering.usage import UsageReads


class UsageRecordsOf(ScopedLoader[int, Page[UsageLine]]):
    """A page of each licence's usage records, newest first."""

    def __init__(self, access: AccessScope, request: PageRequest, where: UsageFilter) -> None:
        super().__init__(access)
        self._request = request
        self._where = where

    async def load_batch(self, keys: Sequence[int]) -> list[Page[UsageLine]]:
        pages = await UsageReads(self.access).record_pages(keys, self._where, self._request)
        return [pages[key] for key in keys]


class DailyUsageOf(ScopedLoader[int, list[DailyTotal]]):
    """Each licence's daily totals over the same days."""

    def __init__(self, access: AccessScope, first_day: date, last_day: date) -> None:
        super().__init__(access)
        self._first_day = first_day
        self._last_day = last_day

    async def load_batch(self, keys: Sequence[int]) -> list[list[DailyTotal]]:
        totals = await UsageReads(self.access).daily_totals(keys, self._first_day, self._last_day)
        return [totals[key] for key in keys]


class LicensedVersionsOf(ScopedLoader[int, list[LicensedVersion]]):
    """Each licence's models, the versions it pins and their newest model cards."""

    async def load_batch(self, keys: Sequence[int]) -> list[list[LicensedVersion]]:
        found = await licensed_versions(self.access, keys)
        return [found[key] for key in keys]
