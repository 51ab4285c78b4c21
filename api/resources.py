"""The long-lived resources of one gateway process, created in the Starlette lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
from starlette.requests import HTTPConnection
from starlette.types import Scope

from api.audit.entries import AuditEntry
from api.auth.authenticate import Authenticator
from api.auth.issuers import IssuerRegistry
from api.auth.keys import KeyRing
from api.auth.principal import Principal
from api.db.endpoints import DatabaseEndpoints
from api.db.unit_of_work import UnitOfWork
from api.domain.geo import CoordinateConverter
from api.domain.sla import SlaCalendar
from api.events.incident_changes import IncidentChangeHub
from api.metrics import Metrics
from api.policy.engine import PolicyEngine
from api.repositories.audit import AuditRepository
from api.settings import Settings


@dataclass
class Database:
    pool: asyncpg.Pool
    metrics: Metrics

    def unit_of_work(self, principal: Principal, operation: Callable[[], str]) -> UnitOfWork:
        """A unit of work whose statement count is recorded under the operation's name, which
        is read when it closes (a GraphQL operation's name is known only once it is parsed)."""
        return UnitOfWork(
            self.pool, principal.database_settings(), on_close=self.recorder(operation)
        )

    def recorder(self, operation: Callable[[], str]) -> Callable[[int], None]:
        def record(statements: int) -> None:
            name = self.metrics.operation_name(operation())
            self.metrics.db_statements.labels(name).observe(statements)

        return record


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
    policy: PolicyEngine
    keys: KeyRing
    issuers: IssuerRegistry
    authenticator: Authenticator
    authorization_server: AuthorizationServer = field(init=False)

    def __post_init__(self) -> None:
        from api.auth.server import AuthorizationServer

        self.authorization_server = AuthorizationServer(self)

    async def audit_refusal(self, request_id: str, scope: Scope, reason: str) -> None:
        """Record a request refused at authentication (no principal, so no operation ran)."""
        client = scope.get("client")
        entry = AuditEntry(
            occurred_at=datetime.now(UTC),
            request_id=request_id,
            subject=f"unauthenticated@{client[0] if client else 'unknown'}",
            client_id=None,
            bureau=None,
            principal_kind="anonymous",
            category="authentication",
            operation=str(scope.get("path", "")),
            document_hash=None,
            resource_ids=[],
            decision="DENY",
            policy_ids=[],
            policy_version=self.policy.version,
            personal_data=False,
            details={"reason": reason},
        )
        principal = Principal.system("authentication")
        async with self.database.unit_of_work(principal, lambda: "authentication") as uow:
            await AuditRepository(uow).append(entry)


if TYPE_CHECKING:
    from api.auth.server import AuthorizationServer


def resources_of(connection: HTTPConnection) -> Resources:
    resources: Resources = connection.state.resources
    return resources
