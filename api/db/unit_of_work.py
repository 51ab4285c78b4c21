"""One database transaction per request, carrying the caller's identity.

The connection is taken from the pool on first use, a transaction is opened, and the principal's
identity is written with ``set_config(name, value, true)`` so it lasts only as long as the
transaction: row-level security policies read it, and it can never leak to the next user of the
pooled connection. Statements on one unit of work are serialised (GraphQL resolves fields
concurrently; an asyncpg connection runs one statement at a time).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import asyncpg
import structlog
from asyncpg.transaction import Transaction

from api.db.errors import UNREACHABLE

_SET_IDENTITY = (
    "SELECT set_config(name, value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)"
)
# The identity, plus columns a caller asks for in the same round trip (their parameters are $3…).
_SET_IDENTITY_WITH = """
SELECT (SELECT count(*) FROM (
            SELECT set_config(name, value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)
        ) AS identity) AS identity, {columns}
"""


async def set_identity(connection: asyncpg.Connection, identity: Mapping[str, str]) -> None:
    """Write ``identity`` for the rest of the connection's open transaction (and no longer)."""
    names = list(identity)
    await connection.execute(_SET_IDENTITY, names, [identity[n] for n in names])


log = structlog.get_logger(__name__)
AfterCommit = Callable[[asyncpg.Connection], Awaitable[object]]


class UnitOfWork:
    """A lazily opened transaction on one pooled connection."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        identity: Mapping[str, str],
        *,
        on_close: Callable[[int], None] | None = None,
    ) -> None:
        self._pool = pool
        self._identity = identity
        self.on_close = on_close
        self._connection: asyncpg.Connection | None = None
        self._transaction: Transaction | None = None
        self._lock = asyncio.Lock()
        self.statements = 0
        self._after_commit: list[AfterCommit] = []

    def after_commit(self, step: AfterCommit) -> None:
        """Run ``step`` on the connection once the transaction has committed, before the
        connection goes back to the pool (once, however often it is asked). A step that fails
        is logged: what it would have done must not be lost by failing (see ``close``)."""
        if step not in self._after_commit:
            self._after_commit.append(step)

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close(commit=exc is None)

    async def begin(self, columns: str, *args: Any) -> asyncpg.Record:
        """Open the transaction now, computing ``columns`` (SQL whose parameters start at $3) in
        the statement that sets the identity; return that row. One round trip does both: a
        request's token status is checked this way (see ``OAuthRepository.token_status_columns``).
        """
        async with self._lock:
            if self._connection is not None:
                raise RuntimeError("the unit of work is already open")
            connection = await self._pool.acquire()
            try:
                transaction = connection.transaction()
                await transaction.start()
                names = list(self._identity)
                row = await connection.fetchrow(
                    _SET_IDENTITY_WITH.format(columns=columns),
                    names,
                    [self._identity[n] for n in names],
                    *args,
                )
            except BaseException:
                await self._pool.release(connection)
                raise
            self.statements += 1
            self._connection, self._transaction = connection, transaction
            assert row is not None
            return row

    async def _open(self) -> asyncpg.Connection:
        if self._connection is None:
            connection = await self._pool.acquire()
            try:
                transaction = connection.transaction()
                await transaction.start()
                await set_identity(connection, self._identity)
            except BaseException:
                await self._pool.release(connection)
                raise
            self.statements += 1
            self._connection, self._transaction = connection, transaction
        return self._connection

    @property
    def opened(self) -> bool:
        return self._connection is not None

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._lock:
            connection = await self._open()
            self.statements += 1
            return await connection.fetch(query, *args)  # type: ignore[no-any-return]

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self._lock:
            connection = await self._open()
            self.statements += 1
            return await connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self._lock:
            connection = await self._open()
            self.statements += 1
            return await connection.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self._lock:
            connection = await self._open()
            self.statements += 1
            return await connection.execute(query, *args)  # type: ignore[no-any-return]

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Run a block in a savepoint: an exception inside undoes only the block's writes.

        Mutations run in savepoints so a typed failure leaves nothing behind while the
        request's transaction (and what it records about the request) still commits.
        """
        async with self._lock:
            connection = await self._open()
            savepoint = connection.transaction()
            await savepoint.start()
        try:
            yield
        except BaseException:
            async with self._lock:
                await savepoint.rollback()
            raise
        else:
            async with self._lock:
                await savepoint.commit()

    async def close(self, *, commit: bool) -> None:
        connection, transaction = self._connection, self._transaction
        self._connection = self._transaction = None
        if connection is None or transaction is None:
            return
        try:
            if commit:
                await transaction.commit()
                for step in self._after_commit:
                    try:
                        await step(connection)
                    except UNREACHABLE as error:
                        # Committed already; a step is work anyone can finish later (the audit
                        # chain links pending records at every commit).
                        log.warning("unit_of_work.after_commit_failed", error=repr(error))
            else:
                await transaction.rollback()
        finally:
            # Counted even when the closing itself is cancelled (a subscription whose socket
            # went away while its event's transaction was open).
            try:
                await self._pool.release(connection)
            finally:
                if self.on_close is not None:
                    self.on_close(self.statements)
