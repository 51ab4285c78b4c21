"""The change feed (``api.events.incident_changes``) on a real PostgreSQL: one listening
connection per process, which comes back when the server drops it, and subscribers that cannot
keep up are ended alone, without holding the others back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from api.db.pool import connect
from api.events.incident_changes import (
    CHANNEL,
    IncidentChangeHub,
    IncidentChangeNotice,
    SubscriberLagged,
)
from api.settings import DatabaseSettings, Settings
from tests.graph.helpers import act, create_incident, key_of
from tests.support import DatabaseUnderTest, GraphQLClient, free_port

pytestmark = pytest.mark.db

WAIT = 10.0


@dataclass
class Listener:
    hub: IncidentChangeHub
    application_name: str
    attempts: int = 0


Start = Callable[..., Awaitable[Listener]]


@pytest.fixture
async def listener(database: DatabaseUnderTest) -> AsyncIterator[Start]:
    """Starts hubs listening as the application role, as the gateway does; stops them after.

    ``unreachable_first`` sends that many first connection attempts to a port nobody listens
    on; ``Listener.attempts`` counts the attempts.
    """
    settings = Settings(database=DatabaseSettings(url=database.app_url))
    started: list[IncidentChangeHub] = []

    async def start(queue_size: int = 1000, unreachable_first: int = 0) -> Listener:
        name = f"lighthouse-test-listener-{uuid.uuid4().hex[:8]}"
        nowhere = f"postgresql://lighthouse_app@127.0.0.1:{free_port()}/nowhere"

        async def connection() -> asyncpg.Connection:
            made.attempts += 1
            url = nowhere if made.attempts <= unreachable_first else database.app_url
            return await connect(url, settings, name)

        hub = IncidentChangeHub(connection, queue_size=queue_size)
        made = Listener(hub, name)
        started.append(hub)
        await hub.start()
        return made

    yield start
    for hub in started:
        await hub.stop()


async def backend(owner: asyncpg.Connection, application_name: str) -> int | None:
    """The server process of the connection that ``application_name`` names, if it is open."""
    pid = await owner.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
        application_name,
    )
    return int(pid) if pid is not None else None


async def notify(owner: asyncpg.Connection, incident_id: int, version: int = 1) -> None:
    """A notice shaped as the incident trigger shapes it (without the visibility facts, which
    the feed takes as optional), sent on the feed's channel."""
    await owner.execute(
        "SELECT pg_notify($1, json_build_object('id', $2::bigint, 'version', $3::int, 'op', 'UPDATE',"
        " 'status', 'VERIFIED', 'responsible_bureau_id', 1)::text)",
        CHANNEL, incident_id, version,
    )  # fmt: skip


async def next_notice(notices: AsyncIterator[IncidentChangeNotice]) -> IncidentChangeNotice:
    return await asyncio.wait_for(anext(notices), WAIT)


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT} s: {what}")
        await asyncio.sleep(0.05)


def summary(notice: IncidentChangeNotice) -> tuple[int, int, str, str, int]:
    return (
        notice.incident_id,
        notice.version,
        notice.operation,
        notice.status,
        notice.responsible_bureau_id,
    )


async def test_a_committed_change_reaches_every_subscriber(
    listener: Start, client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    feed = (await listener()).hub
    assert feed.listening
    public_works = await owner.fetchval("SELECT id FROM bureau WHERE code = 'PUBLIC_WORKS'")
    async with feed.subscribe() as first, feed.subscribe() as second:
        created = (await create_incident(client))["incident"]
        incident_id = key_of(created["id"])
        for notices in (first, second):
            notice = await next_notice(notices)
            assert summary(notice) == (incident_id, 1, "INSERT", "VERIFIED", public_works)
            # The notice carries what the visibility rules judge the incident by.
            assert notice.facts is not None
            assert (notice.facts.responsible_bureau, notice.facts.reporting_bureau) == (
                "PUBLIC_WORKS",
                "PUBLIC_WORKS",
            )
        dispatched = await act(client, "DISPATCH", created)
        assert dispatched["__typename"] == "IncidentDispatched"
        update = await next_notice(first)
        assert summary(update) == (incident_id, 2, "UPDATE", "DISPATCHED", public_works)


async def test_the_feed_comes_back_after_its_connection_is_killed(
    listener: Start, client: GraphQLClient, owner: asyncpg.Connection
) -> None:
    started = await listener()
    feed = started.hub
    async with feed.subscribe() as notices:
        killed = await backend(owner, started.application_name)
        assert killed is not None
        assert await owner.fetchval("SELECT pg_terminate_backend($1)", killed)

        async def listening_again() -> bool:
            now = await backend(owner, started.application_name)
            return feed.listening and now is not None and now != killed

        await eventually(listening_again, "the feed listens on a new connection")
        assert started.attempts == 2
        # The subscription made before the loss is fed by the new connection.
        created = (await create_incident(client, title="斷線後的通報"))["incident"]
        notice = await next_notice(notices)
        assert (notice.incident_id, notice.operation) == (key_of(created["id"]), "INSERT")


async def test_an_unreachable_server_is_retried_until_it_answers(
    listener: Start, owner: asyncpg.Connection
) -> None:
    started = await listener(unreachable_first=2)
    assert started.hub.listening
    assert started.attempts == 3
    async with started.hub.subscribe() as notices:
        await notify(owner, 41)
        assert (await next_notice(notices)).incident_id == 41


async def test_a_slow_subscriber_is_ended_alone(listener: Start, owner: asyncpg.Connection) -> None:
    feed = (await listener(queue_size=3)).hub
    async with feed.subscribe() as fast, feed.subscribe() as slow:
        for incident_id in range(1, 9):
            await notify(owner, incident_id)
            # The fast subscriber reads each notice as it comes; the slow one reads none.
            assert (await next_notice(fast)).incident_id == incident_id
        # Its queue held three; the fourth found it full: the oldest notice made room for the
        # end of its stream, and it was passed over from then on.
        assert (await next_notice(slow)).incident_id == 2
        assert (await next_notice(slow)).incident_id == 3
        with pytest.raises(SubscriberLagged):
            await next_notice(slow)
        await notify(owner, 9)
        assert (await next_notice(fast)).incident_id == 9
    # A subscriber that was ended subscribes again and is fed from then on.
    async with feed.subscribe() as again:
        await notify(owner, 10)
        assert (await next_notice(again)).incident_id == 10


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        '{"id": 1}',
        '{"id": "x", "version": 1, "op": "UPDATE", "status": "VERIFIED", "responsible_bureau_id": 1}',
        "[]",
        '"a string"',
        '{"id": 1, "version": 1, "op": "UPDATE", "status": "VERIFIED", "responsible_bureau_id": 1,'
        ' "facts": {"reporting": "POLICE"}}',
    ],
)
async def test_unreadable_notices_are_dropped(
    listener: Start, owner: asyncpg.Connection, payload: str
) -> None:
    """A notice the feed cannot read is logged and dropped: no subscriber sees it, and nothing
    escapes the listener's callback (where it would only reach the event loop's handler)."""
    feed = (await listener()).hub
    loop = asyncio.get_running_loop()
    escaped: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: escaped.append(context))
    try:
        async with feed.subscribe() as notices:
            await owner.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
            await notify(owner, 7, version=3)
            notice = await next_notice(notices)
    finally:
        loop.set_exception_handler(previous)
    assert (notice.incident_id, notice.version) == (7, 3)
    assert [context.get("exception") for context in escaped] == []


async def test_stopping_closes_the_listening_connection(
    listener: Start, owner: asyncpg.Connection
) -> None:
    started = await listener()
    assert await backend(owner, started.application_name) is not None
    await started.hub.stop()

    async def gone() -> bool:
        return await backend(owner, started.application_name) is None

    await eventually(gone, "the listening connection is closed")
