"""Relay cursor connections over keyset pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from strawberry import relay

from api.repositories.sql import Ordering, Page, encode_cursor

NodeT = TypeVar("NodeT")
RecordT = TypeVar("RecordT")
ConnectionT = TypeVar("ConnectionT", bound=relay.Connection[Any])


def build_connection(
    connection_type: type[ConnectionT],
    page: Page[RecordT],
    ordering: Ordering,
    to_node: Callable[[RecordT], Any],
    count: Callable[[], Awaitable[int]],
    edge_cursors: bool = True,
) -> ConnectionT:
    """The page as a connection; ``edge_cursors=False`` skips encoding cursors nobody asked for
    (the page info's first and last cursors are always there)."""

    def cursor(record: RecordT) -> str:
        return encode_cursor(ordering, [getattr(record, column) for column in ordering.columns])

    items = page.items
    edges = [
        relay.Edge(cursor=cursor(record) if edge_cursors else "", node=to_node(record))
        for record in items
    ]
    page_info = relay.PageInfo(
        has_next_page=page.has_next,
        has_previous_page=page.has_previous,
        start_cursor=cursor(items[0]) if items else None,
        end_cursor=cursor(items[-1]) if items else None,
    )
    return connection_type(edges=edges, page_info=page_info, count=count)  # type: ignore[call-arg]
