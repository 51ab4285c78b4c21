"""The long-lived resources of one gateway process, created in the Starlette lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from starlette.requests import HTTPConnection

from api.auth.principal import Principal
from api.db.endpoints import DatabaseEndpoints
from api.db.unit_of_work import UnitOfWork
from api.domain.geo import CoordinateConverter
from api.domain.sla import SlaCalendar
from api.events.incident_changes import IncidentChangeHub
from api.metrics import Metrics
from api.settings import Settings


@dataclass
class Database:
    pool: asyncpg.Pool
    metrics: Metrics

    def unit_of_work(self, principal: Principal, operation: Callable[[], str]) -> UnitOfWork:
        """A unit of work whose statement count is recorded under the operation's name, which
        is read when it closes (a GraphQL operation's name is known only once it is parsed)."""

        def record(statements: int) -> None:
            name = self.metrics.operation_name(operation())
            self.metrics.db_statements.labels(name).observe(statements)

        return UnitOfWork(self.pool, principal.database_settings(), on_close=record)


@dataclass
class Resources:
    settings: Settings
    endpoints: DatabaseEndpoints
    database: Database
    head_revision: str
    calendar: SlaCalendar
    converter: CoordinateConverter
    changes: IncidentChangeHub
    metrics: Metrics


def resources_of(connection: HTTPConnection) -> Resources:
    resources: Resources = connection.state.resources
    return resources
