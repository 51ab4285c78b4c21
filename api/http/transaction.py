"""The request's unit of work, and the one middleware that owns it.

A route that reads or writes on a caller's behalf is declared ``protected`` (per route, not by
path). Its middleware authenticates the bearer token, refuses a bad one with 401 before the
route runs (and audits the refusal), reads the request's body in full — before any connection
is taken: a caller sending it slowly must not hold one that others need — and hands the route a
typed ``RequestTransaction``:

- ``TransactionMode.REQUEST`` (the default): one transaction for the whole request, opened by
  the statement that sets the caller's identity and checks the token, committed by the route
  when its work is done (``commit``) and rolled back by the middleware otherwise. A step that
  needs no database and may take long (an image's decoding, a model's answer) runs
  ``released``: the transaction commits before it and another opens after it;
- ``TransactionMode.SHORT``: no transaction is held for the request. The route runs short
  transactions of its own (``transaction``), each under the caller's identity and re-checking
  the token — authorise and reserve, work with no connection held, settle and audit — so a
  request that lasts a minute (a streamed inference answer) does not pin a pooled connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import Any

import structlog
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api.access.refusals import RefusalLedger, Verdict
from api.access.scope import AccessGate, AccessScope, OperationDescription
from api.audit.collector import AuditCollector
from api.auth.principal import Principal
from api.auth.tokens import InvalidToken
from api.db.errors import UNREACHABLE
from api.db.unit_of_work import UnitOfWork
from api.http.error_shape import GRAPHQL_ERRORS, ErrorShape, with_error_shape
from api.http.request_body import read_body, replaying
from api.http.request_context import AccessNote, access_note
from api.timing import Timings

log = structlog.get_logger(__name__)

STATE_KEY = "request_transaction"


class TransactionMode(StrEnum):
    REQUEST = "request"
    SHORT = "short"


class RequestTransaction:
    """The caller of one request and the transactions it runs in."""

    __slots__ = (
        "_describe",
        "_ended",
        "_gate",
        "_scope",
        "_uow",
        "mode",
        "principal",
        "request_id",
        "timings",
    )

    def __init__(
        self,
        gate: AccessGate,
        principal: Principal,
        request_id: str,
        timings: Timings,
        mode: TransactionMode,
        uow: UnitOfWork | None,
    ) -> None:
        self._gate = gate
        self.principal = principal
        self.request_id = request_id
        self.timings = timings
        self.mode = mode
        self._uow = uow
        self._scope: AccessScope | None = None
        self._describe: Callable[[], OperationDescription] | None = None
        self._ended = False

    @property
    def uow(self) -> UnitOfWork | None:
        """The request's transaction (``REQUEST`` routes; None for ``SHORT`` ones, and while a
        step runs ``released``)."""
        return self._uow

    @property
    def scope(self) -> AccessScope | None:
        """The access scope over the request's transaction, once ``access`` made it (a new one
        after each ``released`` step; None if the transaction after it could not open)."""
        return self._scope

    def operation_name(self) -> str:
        """The name the request's statements are counted under (once the route said it)."""
        return self._describe().name if self._describe is not None else "unknown"

    def note(self, note: AccessNote) -> None:
        """Tell the access log what the request was and how the policies took it."""
        if self._describe is not None:
            note.operation = self._describe().name
        audit = self._scope.audit if self._scope is not None else None
        if audit is None:
            return
        if audit.decision != "ALLOW":
            note.decision = audit.decision
        if note.refusal is None:
            note.refusal = audit.outcome or ("DOCUMENT_REFUSED" if audit.refusal else None)

    def access(self, describe: Callable[[], OperationDescription]) -> AccessScope:
        """The request's access scope, over its one transaction (``REQUEST`` routes), for the
        operation ``describe`` tells of (read when the request commits)."""
        if self._uow is None:
            raise RuntimeError("this route runs short transactions; use transaction()")
        self._describe = describe
        if self._scope is None:
            self._scope = self._gate.over(self.principal, self.request_id, self._uow, self.timings)
        return self._scope

    async def commit(self) -> None:
        """Append the request's audit record and commit. If the commit fails this raises, and
        nothing the request did was kept: the route must not report success. (After a
        ``released`` step whose caller's token no longer stood there is nothing to commit.)"""
        if self._ended:
            return
        if self._scope is None or self._describe is None:
            raise RuntimeError("commit() before access(): nothing to commit")
        await self._scope.record(self._describe())
        await self._scope.uow.close(commit=True)

    @asynccontextmanager
    async def released(self) -> AsyncIterator[None]:
        """Run the block holding no database connection (``REQUEST`` routes, after
        ``access``): the request's transaction commits as the block starts, and a new one
        opens as it ends, under the caller's identity, the token checked again
        (``InvalidToken`` if it no longer stands: the request then has no transaction left).
        Read ``scope`` again after the block: it is over the new transaction.

        The audit record is not cut in two: what the request gathered before the block goes on
        into the new transaction's record, unless it disclosed something (rows read for the
        caller), which is recorded in the transaction that read it, before it commits."""
        scope, describe = self._scope, self._describe
        if scope is None or describe is None or self._uow is None:
            raise RuntimeError("released() needs the request's transaction: access() first")
        carried: AuditCollector | None = scope.audit
        if scope.audit.resources or scope.audit.personal_data:
            await scope.record(describe())
            carried = None
        self._scope = self._uow = None
        await scope.uow.close(commit=True)
        try:
            yield
        finally:
            uow = self._gate.unit_of_work(self.principal, self.operation_name)
            try:
                await self._gate.authenticator.check(uow, self.principal)
            except BaseException:
                await uow.close(commit=False)
                self._ended = True
                raise
            self._uow = uow
            self._scope = self._gate.over(
                self.principal, self.request_id, uow, self.timings, audit=carried
            )

    async def close(self) -> None:
        """Roll back what the route did not commit, and give the connection back."""
        if self._uow is not None:
            await self._uow.close(commit=False)

    @asynccontextmanager
    async def transaction(
        self, describe: Callable[[], OperationDescription]
    ) -> AsyncIterator[AccessScope]:
        """A short transaction under the caller's identity (``SHORT`` routes): the token is
        checked again as it opens, the body runs, its audit record is appended, it commits."""
        if self.mode is not TransactionMode.SHORT:
            raise RuntimeError("this route holds one transaction for the request; use access()")
        async with self._gate.transaction(
            self.principal, self.request_id, describe, timings=self.timings, check_token=True
        ) as scope:
            yield scope


def request_transaction(connection: HTTPConnection) -> RequestTransaction:
    """The request's transaction; only protected routes have one."""
    value = connection.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(value, RequestTransaction):
        raise RuntimeError(f"{connection.url.path} is not a protected route")
    return value


# Who is calling: a route whose callers do not all present bearer tokens (Open311's API keys)
# names them its own way, and may read the body to do so (handing on a ``Receive`` that
# replays what it read). Raises ``InvalidToken`` for a credential that does not stand.
Identify = Callable[[Scope, Receive], Awaitable[tuple[Principal, Receive]]]


def unauthenticated(reason: str) -> Response:
    """401 in GraphQL's shape, with RFC 6750's challenge."""
    return GRAPHQL_ERRORS.unauthenticated(reason)


class RequestTransactionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        mode: TransactionMode = TransactionMode.REQUEST,
        errors: ErrorShape = GRAPHQL_ERRORS,
        identify: Identify | None = None,
    ) -> None:
        self.app = app
        self._mode = mode
        self._errors = errors
        self._identify = identify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        resources = state["resources"]
        gate: AccessGate = resources.gate
        authenticator = gate.authenticator
        timings: Timings = state["timings"]
        request_id: str = state.get("request_id", "")
        uow: UnitOfWork | None = None
        transaction: RequestTransaction | None = None
        note = access_note(scope)

        def operation() -> str:
            return transaction.operation_name() if transaction is not None else "unknown"

        try:
            with timings.measure("auth"):
                if self._identify is None:
                    principal = await authenticator.verify(authorization(scope))
                else:
                    principal, receive = await self._identify(scope, receive)
            # The body, in full, before any connection is taken: however slowly a caller sends
            # it (within the body limit's bytes and seconds), it holds only its own socket.
            with timings.measure("body"):
                body = await read_body(receive)
            if body is None:
                return  # the caller went away: nobody to answer
            receive = replaying(body, receive)
            # Reported apart: every request opens its transaction and sets its identity.
            with timings.measure("begin"):
                if self._mode is TransactionMode.REQUEST:
                    uow = gate.unit_of_work(principal, operation)
                    await authenticator.check(uow, principal)
                elif authenticator.needs_status_check(principal):
                    async with gate.unit_of_work(principal, lambda: "token-check") as check:
                        await authenticator.check(check, principal)
        except InvalidToken as error:
            ledger: RefusalLedger = resources.refusals
            source = client_address(scope)
            verdict = await ledger.refuse(source, scope["path"], error.reason, request_id)
            note.refusal = "UNAUTHENTICATED"
            if verdict is Verdict.THROTTLED:
                note.refusal = "TOO_MANY_REFUSALS"
                await self._errors.throttled(ledger.retry_after(source))(scope, receive, send)
            else:
                await self._errors.unauthenticated(error.reason)(scope, receive, send)
            return
        except UNREACHABLE as error:
            # The database cannot be reached (or refuses connections): nothing was done.
            log.warning("request.database_unavailable", path=scope["path"], error=str(error))
            note.refusal = "SERVICE_UNAVAILABLE"
            reason = "the database cannot be reached now; nothing was done, retry in a moment"
            await self._errors.unavailable(reason)(scope, receive, send)
            return
        transaction = RequestTransaction(gate, principal, request_id, timings, self._mode, uow)
        state[STATE_KEY] = transaction
        note.principal = principal.subject
        try:
            await self.app(scope, receive, send)
        finally:
            # Normally the route committed it; a request that did not is rolled back.
            await transaction.close()
            transaction.note(note)


def protected(
    path: str,
    endpoint: Callable[..., Any],
    *,
    methods: Sequence[str] | None = None,
    mode: TransactionMode = TransactionMode.REQUEST,
    errors: ErrorShape = GRAPHQL_ERRORS,
    name: str | None = None,
    identify: Identify | None = None,
) -> Route:
    """A route whose requests run under their caller's identity (see the module docstring).
    The gateway's own refusals of its requests (a token that does not stand, a source refused
    too often, the database out of reach, a body too large or too slow) are worded in
    ``errors``, the route's own error shape; ``identify`` names callers who do not present a
    bearer token (the default)."""
    route = Route(
        path,
        endpoint,
        methods=list(methods) if methods is not None else None,
        name=name,
        middleware=[
            Middleware(RequestTransactionMiddleware, mode=mode, errors=errors, identify=identify)
        ],
    )
    return with_error_shape(route, errors)


def too_many(retry_after: int) -> Response:
    """429 in GraphQL's shape, for a source refused too often."""
    return GRAPHQL_ERRORS.throttled(retry_after)


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def authorization(scope: Scope) -> str | None:
    """The request's ``Authorization`` header, if it has one."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None
