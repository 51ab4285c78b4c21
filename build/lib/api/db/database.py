"""The application's database: its pool, and units of work opened on it under an identity."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import asyncpg

from api.db.unit_of_work import UnitOfWork

# Told, when a unit of work closes, the operation's name and how many statements it sent.
StatementRecorder = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class Database:
    pool: asyncpg.Pool
    record_statements: StatementRecorder

    def unit_of_work(self, identity: Mapping[str, str], operation: Callable[[], str]) -> UnitOfWork:
        """A unit of work under ``identity`` (the transaction-local settings row-level security
        reads). Its statement count is recorded under the operation's name, read when it
        closes: a GraphQL operation's name is known only once it is parsed."""
        record = self.record_statements
        return UnitOfWork(self.pool, identity, on_close=lambda count: record(operation(), count))
