"""Values written as SQL literals (sent with a COMMIT, where no parameters travel) come back from
PostgreSQL exactly as they went in, whatever they hold: quotes, backslashes, dollar signs and
dollar-quote tags, newlines, any Unicode. A value that could end its own quote would be an
injection; the property test looks for one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.db.literals import call, literal, quoted
from tests.support import DatabaseUnderTest

pytestmark = pytest.mark.db

TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=200)
# Text built from the pieces of the quoting itself, where a mistake would show first.
PIECES = st.lists(st.sampled_from(["$", "q", "1", "$q$", "$q", "q$", "'", "\\", ";", "\n", "é"]))
TRICKY = PIECES.map("".join)


@pytest.fixture(scope="module")
def loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def connection(
    loop: asyncio.AbstractEventLoop, database: DatabaseUnderTest
) -> AsyncIterator[asyncpg.Connection]:
    connection = loop.run_until_complete(asyncpg.connect(database.app_url))
    yield connection
    loop.run_until_complete(connection.close())


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.one_of(TEXT, TRICKY))
@example(text="$q$; DROP TABLE lighthouse.audit_record; --")
@example(text="x$q")
@example(text="$q1$$q$")
@example(text="")
def test_text_comes_back_as_it_went_in(
    loop: asyncio.AbstractEventLoop, connection: asyncpg.Connection, text: str
) -> None:
    assert loop.run_until_complete(connection.fetchval(f"SELECT {literal(text, 'text')}")) == text


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(st.one_of(TEXT, TRICKY), max_size=6))
def test_arrays_of_text_come_back_as_they_went_in(
    loop: asyncio.AbstractEventLoop, connection: asyncpg.Connection, items: list[str]
) -> None:
    query = f"SELECT {literal(items, 'text[]')}"
    assert loop.run_until_complete(connection.fetchval(query)) == items


def test_timestamps_booleans_numbers_and_nulls(
    loop: asyncio.AbstractEventLoop, connection: asyncpg.Connection
) -> None:
    moment = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8)))
    row = loop.run_until_complete(
        connection.fetchrow(
            "SELECT "
            + ", ".join(
                (
                    literal(moment, "timestamptz"),
                    literal(True, "boolean"),
                    literal(False, "boolean"),
                    literal(2**40, "bigint"),
                    literal(None, "text"),
                )
            )
        )
    )
    assert list(row.values()) == [moment.astimezone(UTC), True, False, 2**40, None]
    statement = call("concat", [("a'b", "text"), (None, "text"), (["c"], "text[]")])
    assert loop.run_until_complete(connection.fetchval(statement)) == "a'b{c}"


def test_values_that_cannot_be_written_are_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        quoted("a\x00b")
    with pytest.raises(ValueError, match="time zone"):
        literal(datetime(2026, 12, 1), "timestamptz")
    with pytest.raises(TypeError):
        literal(True, "text")
    with pytest.raises(TypeError):
        literal([1, 2], "int[]")  # type: ignore[list-item]
