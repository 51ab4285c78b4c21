"""One database transaction per request, carrying the caller's identity.

The connection is taken from the pool on first use, a transaction is opened, and the principal's
identity is written with ``set_config(name, value, true)`` so it lasts only as long as the
transaction: row-level security policies read it, and it can never leak to the next user of the
pooled connection. Statements on one unit of work are serialised (GraphQL resolves fields
concurrently; an asyncpg connection runs one statement at a time).

The unit of work sends BEGIN, SAVEPOINT and COMMIT itself rather than through asyncpg's
``Transaction``, so that the statements that follow a commit (the audit chain's linking) go in
the same round trip as the COMMIT.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import asyncpg

from api.db.literals import literal

_SET_IDENTITY = (
    "SELECT set_config(name, value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)"
)
# The identity, plus columns a caller asks for in the same round trip (their parameters are $3…).
_SET_IDENTITY_WITH = """
SELECT (SELECT count(*) FROM (
            SELECT set_config(name, value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)
        ) AS identity) AS identity, {columns}
"""


def identity_statement(identity: Mapping[str, str]) -> str:
    """``_SET_IDENTITY`` without parameters (the values as literals)."""
    settings = ", ".join(
        f"set_config({literal(name, 'text')}, {literal(value, 'text')}, true)"
        for name, value in identity.items()
    )
    return f"SELECT {settings or 'NULL'}"


async def set_identity(connection: asyncpg.Connection, identity: Mapping[str, str]) -> None:
    """Write ``identity`` for the rest of the connection's open transaction (and no longer)."""
    names = list(identity)
    await connection.execute(_SET_IDENTITY, names, [identity[n] for n in names])


# Sent with the COMMIT, in one round trip (statements run in order, an error stops the rest;
# the statements after the COMMIT catch their own, so an error is the commit's). COMMIT alone
# would turn a failed transaction into a silent rollback; this statement (or any statement sent
# before the COMMIT) raises in one.
_COMMITTABLE = "SELECT 1"


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
        self._lock = asyncio.Lock()
        self._closed = False
        self._savepoints = 0
        self.statements = 0
        self._at_commit: list[str] = []
        self._after_commit: list[str] = []

    def at_commit(self, statement: str) -> None:
        """Run ``statement`` (SQL without parameters: see ``api.db.literals``) in the
        transaction, just before it commits, in the COMMIT's own round trip. An error in it fails
        the commit, and nothing is kept. It runs after everything else, so a savepoint rolled
        back before it does not take it back (a request's audit record, which must survive the
        request's failed parts, is appended this way)."""
        self._at_commit.append(statement)

    def after_commit(self, statement: str) -> None:
        """Run ``statement`` (SQL without parameters) once the transaction has committed, in the
        COMMIT's own round trip, in a transaction of its own (once, however often it is asked).
        It must not raise (a database function that catches its own errors): an error from that
        round trip is taken as the commit's. What it does must be work anyone can finish later,
        since a gateway may die between the two."""
        if statement not in self._after_commit:
            self._after_commit.append(statement)

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
            if self._connection is not None or self._closed:
                raise RuntimeError("the unit of work is already open, or closed")
            connection = await self._pool.acquire()
            try:
                await connection.execute("BEGIN")
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
            self._connection = connection
            assert row is not None
            return row

    async def begin_with(self, statement: str) -> None:
        """Open the transaction now, with the identity and ``statement`` (SQL without
        parameters, see ``api.db.literals``) in the same round trip as BEGIN: one message in
        PostgreSQL's simple query protocol. Its rows are not returned; an error is raised (and
        nothing is left open), which is how a check in ``statement`` answers."""
        async with self._lock:
            if self._connection is not None or self._closed:
                raise RuntimeError("the unit of work is already open, or closed")
            connection = await self._pool.acquire()
            try:
                await connection.execute(f"BEGIN;{identity_statement(self._identity)};{statement}")
            except BaseException:
                try:
                    if connection.is_in_transaction():
                        await connection.execute("ROLLBACK")
                finally:
                    await self._pool.release(connection)
                raise
            self.statements += 1
            self._connection = connection

    async def _open(self) -> asyncpg.Connection:
        if self._closed:
            # A resolver still running after its operation ended (graphql-core's gather does not
            # cancel a failed field's siblings) must not open a transaction nobody closes.
            raise RuntimeError("the unit of work is closed")
        if self._connection is None:
            connection = await self._pool.acquire()
            try:
                await connection.execute("BEGIN")
                await set_identity(connection, self._identity)
            except BaseException:
                await self._pool.release(connection)
                raise
            self.statements += 1
            self._connection = connection
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
            self._savepoints += 1
            name = f"lighthouse_{self._savepoints}"
            await connection.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            async with self._lock:
                await connection.execute(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")
            raise
        else:
            async with self._lock:
                await connection.execute(f"RELEASE SAVEPOINT {name}")

    async def close(self, *, commit: bool) -> None:
        """Commit or roll back, and give the connection back; the unit of work is then closed
        (a statement sent to it raises). Waits for a statement in flight (a resolver that
        outlived its operation) to finish first: one connection runs one statement at a time."""
        async with self._lock:
            if self._closed:
                return
            if commit and self._at_commit and self._connection is None:
                await self._open()
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if commit:
                self.statements += len(self._at_commit)
                script = (*(self._at_commit or [_COMMITTABLE]), "COMMIT", *self._after_commit)
                try:
                    await connection.execute(";".join(script))
                finally:
                    if connection.is_in_transaction():  # failed before its COMMIT
                        await connection.execute("ROLLBACK")
            else:
                await connection.execute("ROLLBACK")
        finally:
            # Counted even when the closing itself is cancelled (a subscription whose socket
            # went away while its event's transaction was open).
            try:
                await self._pool.release(connection)
            finally:
                if self.on_close is not None:
                    self.on_close(self.statements)
