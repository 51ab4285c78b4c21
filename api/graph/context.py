"""The typed GraphQL context, and the per-operation scope that carries the unit of work.

A context is built per HTTP request (or once per WebSocket connection). Each operation — and
each event a subscription delivers — runs in its own ``RequestScope``: one database transaction
and a fresh set of DataLoaders, so no cached row outlives the transaction that read it and
nothing one caller loaded is ever served to another.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from api.audit.collector import AuditCollector
from api.audit.entries import AuditEntry
from api.auth.principal import Principal
from api.db.unit_of_work import UnitOfWork
from api.domain.errors import Unauthenticated
from api.graph.assets.loaders import AssetLoaders
from api.graph.bureaus.loaders import BureauLoaders
from api.graph.incidents.loaders import IncidentLoaders
from api.http.timing import Timings
from api.policy.authorizer import Authorizer
from api.policy.engine import Entity
from api.repositories.audit import AuditRepository
from api.services.incidents import IncidentWorkflow

if TYPE_CHECKING:
    from api.resources import Resources


class Loaders:
    """Every DataLoader of one scope; built per scope, never shared."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.bureaus = BureauLoaders(uow)
        self.assets = AssetLoaders(uow)
        self.incidents = IncidentLoaders(uow)


@dataclass(slots=True)
class RequestScope:
    uow: UnitOfWork
    loaders: Loaders
    audit: AuditCollector
    authorizer: Authorizer


_current_scope: ContextVar[RequestScope | None] = ContextVar("lighthouse_scope", default=None)


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    resources: Resources
    principal: Principal
    request_id: str
    connection_params: dict[str, object] | None = None

    @property
    def scope(self) -> RequestScope:
        scope = _current_scope.get()
        if scope is None:
            raise RuntimeError("no request scope is open (the unit-of-work extension opens one)")
        return scope

    @property
    def uow(self) -> UnitOfWork:
        return self.scope.uow

    @property
    def loaders(self) -> Loaders:
        return self.scope.loaders

    @property
    def audit(self) -> AuditCollector:
        return self.scope.audit

    @property
    def authorizer(self) -> Authorizer:
        return self.scope.authorizer

    def authorize(self, action: str, resource: Entity) -> None:
        """Raise Forbidden unless the policies let the caller take ``action`` on ``resource``."""
        self.scope.authorizer.require(action, resource)

    def workflow(self) -> IncidentWorkflow:
        return IncidentWorkflow(
            self.uow,
            self.principal,
            self.resources.calendar,
            self.resources.settings.idempotency_key_ttl_hours,
            self.scope.authorizer,
        )

    @asynccontextmanager
    async def open_scope(
        self, describe: Callable[[], OperationDescription], *, check_token: bool = False
    ) -> AsyncIterator[RequestScope]:
        """Open a transaction and loaders for one operation (or one subscription event).

        When the body finishes, the operation's audit record is written in the same
        transaction, so the record and the access it describes commit (or vanish) together.
        ``check_token`` re-checks the caller's token first (each event of a subscription);
        otherwise the transaction opens lazily, on the first statement: a subscription's own
        operation spans its whole life and must not hold a connection meanwhile.
        """
        name = lambda: describe().name  # noqa: E731
        # An HTTP request arrives with its transaction opened by authentication (see
        # api.auth.authenticate); a subscription event opens its own.
        uow: UnitOfWork | None = self.request.scope.get("state", {}).pop("uow", None)
        if uow is not None:
            uow.on_close = self.resources.database.recorder(name)
        else:
            uow = self.resources.database.unit_of_work(self.principal, name)
            if check_token:
                await self._check_token(uow)
        audit = AuditCollector()
        timings: Timings = getattr(self.request.state, "timings", None) or Timings()
        authorizer = Authorizer(self.resources.policy, self.principal, audit, timings)
        scope = RequestScope(uow, Loaders(uow), audit, authorizer)
        token = _current_scope.set(scope)
        try:
            async with uow:
                yield scope
                if not audit.silent:
                    with timings.measure("audit"):
                        entry = audit_entry(self, describe(), audit, self.resources.policy.version)
                        await AuditRepository(uow).append(entry)
        finally:
            _current_scope.reset(token)

    async def _check_token(self, uow: UnitOfWork) -> None:
        """For a long-lived connection (a subscription), check before each event that the
        token has not expired, been revoked or lost its client, as a new request would."""
        principal = self.principal
        if principal.expires_at is not None and principal.expires_at < time.time():
            raise Unauthenticated("the access token has expired; reconnect with a new one")
        authenticator = self.resources.authenticator
        if authenticator.needs_status_check(principal):
            assert principal.token_id is not None
            status = await uow.open_checking(principal.token_id, principal.client_id or "")
            problem = authenticator.status_problem(*status)
            if problem:
                await uow.close(commit=False)
                raise Unauthenticated(f"{problem}; reconnect with a new token")


@dataclass(frozen=True, slots=True)
class OperationDescription:
    category: str
    name: str
    kind: str
    document: str | None = None
    variables: dict[str, object] | None = None


def audit_entry(
    context: Context, operation: OperationDescription, audit: AuditCollector, policy_version: str
) -> AuditEntry:
    principal = context.principal
    document_hash = (
        hashlib.sha256(operation.document.encode()).hexdigest() if operation.document else None
    )
    details: dict[str, object] = {"type": operation.kind}
    if operation.variables:
        # Variables are redacted: their names are kept, never their values.
        details["variables"] = sorted(operation.variables)
    if audit.personal_data:
        details["personal_data"] = sorted(audit.personal_data)
    if audit.notes:
        details["notes"] = audit.notes
    return AuditEntry(
        occurred_at=datetime.now(UTC),
        request_id=context.request_id,
        subject=principal.subject,
        client_id=principal.client_id,
        bureau=principal.bureau_code,
        principal_kind=principal.kind.value,
        category=operation.category,
        operation=operation.name,
        document_hash=document_hash,
        resource_ids=sorted(audit.resources | audit.personal_data),
        decision=audit.decision,
        policy_ids=audit.policy_ids,
        policy_version=policy_version,
        personal_data=bool(audit.personal_data),
        details=details,
    )


Info: TypeAlias = StrawberryInfo[Context, None]
