"""Relay cursor connections over keyset pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from strawberry import relay
from strawberry.federation.schema_directives import Shareable

from api.repositories.sql import Ordering, Page, encode_cursor

NodeT = TypeVar("NodeT")
RecordT = TypeVar("RecordT")
ConnectionT = TypeVar("ConnectionT", bound=relay.Connection[Any])

# Every subgraph with a connection has Relay's PageInfo, resolved alike: shareable. (Strawberry's
# own type, so the directive is added to its definition here, once.)
_page_info = relay.PageInfo.__strawberry_definition__  # type: ignore[attr-defined]
if not any(isinstance(directive, Shareable) for directive in _page_info.directives):
    _page_info.directives = (*_page_info.directives, Shareable())


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
