"""The register of licensees, as row-level security lets the caller read it: the city's officers
and usage readers the whole register, a licensee's client its own company.

Kept apart from ``api.repositories.licensing`` (which holds the ledger's hot path) so reading the
register changes nothing there; it reuses that module's columns and record.
"""

from __future__ import annotations

import asyncpg

from api.db.unit_of_work import UnitOfWork
from api.repositories.licensing import LICENSEE_COLUMNS, Contact, LicenseeRecord

# Ordered by code so a register longer than one answer is cut at the same place every time.
LICENSEES = f"SELECT {LICENSEE_COLUMNS} FROM licensee ORDER BY code LIMIT $1"


def licensee_of(row: asyncpg.Record) -> LicenseeRecord:
    values = dict(row)
    values["contacts"] = [Contact(**contact) for contact in values["contacts"]]
    return LicenseeRecord(**values)


class LicenseeRegister:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def visible(self, limit: int) -> list[LicenseeRecord]:
        """The licensees the caller may read, by code; at most ``limit``."""
        return [licensee_of(row) for row in await self._uow.fetch(LICENSEES, limit)]
