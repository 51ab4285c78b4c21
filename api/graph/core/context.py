"""The typed GraphQL context, and the scope each operation runs in.

A context is built per HTTP request (or once per WebSocket connection). Each operation — and
each event a subscription delivers — runs in its own ``GraphScope``: an access scope (one
transaction, the caller's authorizer and audit collector, see ``api.access``) and a fresh
loader registry. The context names no domain; domains reach their loaders and services through
it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from api.access.scope import AccessScope, OperationDescription
from api.audit.collector import AuditCollector
from api.auth.principal import Principal
from api.auth.tokens import InvalidToken
from api.db.unit_of_work import UnitOfWork
from api.domain.errors import Unauthenticated
from api.graph.core.loaders import LoaderRegistry
from api.http.transaction import RequestTransaction
from api.policy.authorizer import Authorizer
from api.policy.engine import Entity
from api.timing import Timings

if TYPE_CHECKING:
    from api.resources import Resources


@dataclass(slots=True)
class GraphScope:
    access: AccessScope
    loaders: LoaderRegistry


_current_scope: ContextVar[GraphScope | None] = ContextVar("lighthouse_scope", default=None)


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    resources: Resources
    principal: Principal
    request_id: str
    # An HTTP request's transaction (a protected route's); None on a WebSocket.
    transaction: RequestTransaction | None = None
    connection_params: dict[str, object] | None = None

    @property
    def scope(self) -> GraphScope:
        scope = _current_scope.get()
        if scope is None:
            raise RuntimeError("no operation scope is open (OperationScopeExtension opens one)")
        return scope

    @property
    def access(self) -> AccessScope:
        return self.scope.access

    @property
    def uow(self) -> UnitOfWork:
        return self.scope.access.uow

    @property
    def loaders(self) -> LoaderRegistry:
        return self.scope.loaders

    @property
    def audit(self) -> AuditCollector:
        return self.scope.access.audit

    @property
    def authorizer(self) -> Authorizer:
        return self.scope.access.authorizer

    def authorize(self, action: str, resource: Entity) -> None:
        """Raise Forbidden unless the policies let the caller take ``action`` on ``resource``."""
        self.scope.access.authorizer.require(action, resource)

    @property
    def timings(self) -> Timings:
        timings: Timings | None = getattr(self.request.state, "timings", None)
        return timings or Timings()

    @asynccontextmanager
    async def enter(self, access: AccessScope) -> AsyncIterator[GraphScope]:
        """Run the body in ``access``, with loaders of its own."""
        scope = GraphScope(access, LoaderRegistry(access))
        token = _current_scope.set(scope)
        try:
            yield scope
        finally:
            _current_scope.reset(token)

    @asynccontextmanager
    async def released(self) -> AsyncIterator[None]:
        """Run the block holding no database connection (an image's decoding, a model's
        answer): the operation's transaction commits before it and a new one opens after it,
        the caller's token checked again (``RequestTransaction.released``); the operation goes
        on in the new one, with loaders of its own. A WebSocket's operation keeps its one
        transaction: it carries no upload, and so has no such step."""
        if self.transaction is None:
            yield
            return
        scope = self.scope
        try:
            async with self.transaction.released():
                yield
        except InvalidToken as error:
            raise Unauthenticated(
                f"{error.reason}; send the request again with a new token"
            ) from None
        finally:
            access = self.transaction.scope
            if access is not None:
                scope.access, scope.loaders = access, LoaderRegistry(access)

    @asynccontextmanager
    async def event_scope(
        self, describe: Callable[[], OperationDescription]
    ) -> AsyncIterator[GraphScope]:
        """One event of a long-lived operation (a subscription): a short transaction of its own,
        the caller's token checked again first, fresh loaders, its own audit record."""
        gate = self.resources.gate
        transaction = gate.transaction(
            self.principal, self.request_id, describe, timings=self.timings, check_token=True
        )
        try:
            async with transaction as access, self.enter(access) as scope:
                yield scope
        except InvalidToken as error:
            raise Unauthenticated(f"{error.reason}; reconnect with a new token") from None


Info: TypeAlias = StrawberryInfo[Context, None]
