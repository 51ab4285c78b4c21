"""The typed GraphQL context, and the per-operation scope that carries the unit of work.

A context is built per HTTP request (or once per WebSocket connection). Each operation — and
each event a subscription delivers — runs in its own ``RequestScope``: one database transaction
and a fresh set of DataLoaders, so no cached row outlives the transaction that read it and
nothing one caller loaded is ever served to another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from api.auth.principal import Principal
from api.db.unit_of_work import UnitOfWork
from api.graph.assets.loaders import AssetLoaders
from api.graph.bureaus.loaders import BureauLoaders
from api.graph.incidents.loaders import IncidentLoaders
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


_current_scope: ContextVar[RequestScope | None] = ContextVar("lighthouse_scope", default=None)


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    resources: Resources
    principal: Principal
    request_id: str
    operation_statements: list[int] = field(default_factory=list)

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

    def workflow(self) -> IncidentWorkflow:
        return IncidentWorkflow(
            self.uow,
            self.principal,
            self.resources.calendar,
            self.resources.settings.idempotency_key_ttl_hours,
        )

    @asynccontextmanager
    async def open_scope(self, operation: Callable[[], str]) -> AsyncIterator[RequestScope]:
        """Open a transaction and loaders for one operation (or one subscription event)."""
        uow = self.resources.database.unit_of_work(self.principal, operation)
        scope = RequestScope(uow, Loaders(uow))
        token = _current_scope.set(scope)
        try:
            async with uow:
                yield scope
        finally:
            _current_scope.reset(token)


Info: TypeAlias = StrawberryInfo[Context, None]
