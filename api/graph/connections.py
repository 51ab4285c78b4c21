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
) -> ConnectionT:
    edges = [
        relay.Edge(
            cursor=encode_cursor(
                ordering, [getattr(record, column) for column in ordering.columns]
            ),
            node=to_node(record),
        )
        for record in page.items
    ]
    page_info = relay.PageInfo(
        has_next_page=page.has_next,
        has_previous_page=page.has_previous,
        start_cursor=edges[0].cursor if edges else None,
        end_cursor=edges[-1].cursor if edges else None,
    )
    return connection_type(edges=edges, page_info=page_info, count=count)  # type: ignore[call-arg]
