"""Fan PostgreSQL notifications about incidents out to this process's subscribers.

A trigger on ``incident`` calls ``pg_notify`` in the writing transaction; PostgreSQL delivers
the notice on commit to every listening connection, so a change made through any gateway
process (or any other client) reaches the subscribers of every process. One dedicated
connection per process listens; it reconnects with backoff if the server goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import orjson
import structlog

from api.domain.models import IncidentFacts

log = structlog.get_logger(__name__)

CHANNEL = "lighthouse_incident_changes"


@dataclass(frozen=True, slots=True)
class IncidentChangeNotice:
    incident_id: int
    version: int
    operation: str  # INSERT or UPDATE
    status: str
    responsible_bureau_id: int
    # What the visibility rules judge the incident by, as of the change (bureau codes).
    facts: IncidentFacts | None = None


class SubscriberLagged(Exception):
    """A subscriber fell too far behind; its stream ends so it can re-read and subscribe again."""


class IncidentChangeHub:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        queue_size: int = 1000,
    ) -> None:
        self._connect = connect
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[IncidentChangeNotice | SubscriberLagged]] = set()
        self._task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="incident-change-listener")
        # Start-up waits for the first LISTEN so no change made after start-up is missed.
        await asyncio.wait_for(self._listening.wait(), timeout=30)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def _supervise(self) -> None:
        delay = 0.5
        while True:
            closed = asyncio.Event()
            try:
                connection = await self._connect()
                connection.add_termination_listener(lambda _, lost=closed: lost.set())
                await connection.add_listener(CHANNEL, self._on_notify)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("incident_changes.connect_failed", error=str(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self._connection = connection
            self._listening.set()
            log.info("incident_changes.listening", channel=CHANNEL)
            delay = 0.5
            await closed.wait()
            self._listening.clear()
            log.warning("incident_changes.connection_lost", retry_in=delay)

    def _on_notify(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = orjson.loads(payload)
            facts = data.get("facts")
            notice = IncidentChangeNotice(
                incident_id=int(data["id"]),
                version=int(data["version"]),
                operation=str(data["op"]),
                status=str(data["status"]),
                responsible_bureau_id=int(data["responsible_bureau_id"]),
                facts=IncidentFacts(
                    incident_id=int(data["id"]),
                    responsible_bureau=str(facts["responsible"]),
                    reporting_bureau=facts.get("reporting"),
                    asset_bureau=facts.get("asset"),
                    held_by=frozenset(facts.get("held_by") or ()),
                    shared_with=frozenset(facts.get("shared_with") or ()),
                )
                if isinstance(facts, dict)
                else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            log.error("incident_changes.bad_payload", payload=payload[:200])
            return
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(notice)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(
                    SubscriberLagged("subscriber fell behind; re-read and resubscribe")
                )

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[IncidentChangeNotice]]:
        queue: asyncio.Queue[IncidentChangeNotice | SubscriberLagged] = asyncio.Queue(
            self._queue_size
        )
        self._subscribers.add(queue)

        async def notices() -> AsyncIterator[IncidentChangeNotice]:
            while True:
                item = await queue.get()
                if isinstance(item, SubscriberLagged):
                    raise item
                yield item

        try:
            yield notices()
        finally:
            self._subscribers.discard(queue)
