"""Fan PostgreSQL notifications about incidents, and the detections that open or join them, out
to this process's subscribers.

A trigger on ``incident`` (and on ``detection``) calls ``pg_notify`` in the writing transaction;
PostgreSQL delivers the notice on commit to every listening connection, so a change made through
any gateway process, a vision worker or any other client reaches the subscribers of every
process. One dedicated connection per process listens to both channels; it reconnects with
backoff if the server goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import structlog

from api.db.errors import UNREACHABLE
from api.domain.models import IncidentFacts

log = structlog.get_logger(__name__)

CHANNEL = "lighthouse_incident_changes"
DETECTIONS = "lighthouse_detections"


@dataclass(frozen=True, slots=True)
class IncidentChangeNotice:
    incident_id: int
    version: int
    operation: str  # INSERT or UPDATE
    status: str
    responsible_bureau_id: int
    # What the visibility rules judge the incident by, as of the change (bureau codes).
    facts: IncidentFacts | None = None


@dataclass(frozen=True, slots=True)
class DetectionNotice:
    detection_id: int
    bureau_id: int
    incident_id: int | None
    category: str


Notice = IncidentChangeNotice | DetectionNotice


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
        self._subscribers: dict[str, set[asyncio.Queue[Any]]] = {CHANNEL: set(), DETECTIONS: set()}
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
                for channel in self._subscribers:
                    await connection.add_listener(channel, self._on_notify)
            except UNREACHABLE as error:
                log.warning("incident_changes.connect_failed", error=str(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self._connection = connection
            self._listening.set()
            log.info("incident_changes.listening", channels=sorted(self._subscribers))
            delay = 0.5
            await closed.wait()
            self._listening.clear()
            log.warning("incident_changes.connection_lost", retry_in=delay)

    def _on_notify(self, _connection: object, _pid: int, channel: str, payload: str) -> None:
        try:
            data = orjson.loads(payload)
            notice = _incident_notice(data) if channel == CHANNEL else _detection_notice(data)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.error("incident_changes.bad_payload", channel=channel, payload=payload[:200])
            return
        subscribers = self._subscribers.get(channel, set())
        for queue in list(subscribers):
            try:
                queue.put_nowait(notice)
            except asyncio.QueueFull:
                subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(
                    SubscriberLagged("subscriber fell behind; re-read and resubscribe")
                )

    def subscribe(
        self,
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[IncidentChangeNotice]]:
        """Incidents as they are created or change."""
        return self._subscribe(CHANNEL)

    def detections(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[DetectionNotice]]:
        """Detections as they are recorded."""
        return self._subscribe(DETECTIONS)

    @contextlib.asynccontextmanager
    async def _subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[Any]]:
        queue: asyncio.Queue[Any] = asyncio.Queue(self._queue_size)
        subscribers = self._subscribers[channel]
        subscribers.add(queue)

        async def notices() -> AsyncIterator[Any]:
            while True:
                item = await queue.get()
                if isinstance(item, SubscriberLagged):
                    raise item
                yield item

        try:
            yield notices()
        finally:
            subscribers.discard(queue)


def _incident_notice(data: dict[str, Any]) -> IncidentChangeNotice:
    facts = data.get("facts")
    return IncidentChangeNotice(
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


def _detection_notice(data: dict[str, Any]) -> DetectionNotice:
    incident = data.get("incident_id")
    return DetectionNotice(
        detection_id=int(data["id"]),
        bureau_id=int(data["bureau_id"]),
        incident_id=int(incident) if incident is not None else None,
        category=str(data["category"]),
    )
