"""Dynamic SQL in one place: WHERE clauses built from typed filters, and keyset paging."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson

from api.domain.errors import InvalidInput
from api.domain.geo import BoundingBox, Circle

T = TypeVar("T")


class Conditions:
    """An AND of clauses whose ``{}`` holes become numbered parameters."""

    def __init__(self, args: list[Any] | None = None) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = args if args is not None else []

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, template: str, *values: Any) -> None:
        self.clauses.append(template.format(*(self.param(value) for value in values)))

    def near(self, circle: Circle) -> None:
        # earth_box is the GiST-indexed prefilter; earth_distance makes it exact.
        lat, lon, radius = (
            self.param(circle.centre.latitude),
            self.param(circle.centre.longitude),
            self.param(circle.radius_metres),
        )
        centre = f"ll_to_earth({lat}, {lon})"
        self.clauses.append(
            f"earth_box({centre}, {radius}) @> ll_to_earth(latitude, longitude)"
            f" AND earth_distance({centre}, ll_to_earth(latitude, longitude)) <= {radius}"
        )

    def within(self, box: BoundingBox) -> None:
        if box.polygon is None:
            self.add(
                "point(longitude, latitude) <@ box(point({}, {}), point({}, {}))",
                box.min_longitude,
                box.min_latitude,
                box.max_longitude,
                box.max_latitude,
            )
        else:
            outline = ",".join(f"({lon!r},{lat!r})" for lon, lat in box.polygon)
            self.add("point(longitude, latitude) <@ ({}::text)::polygon", f"({outline})")

    def sql(self) -> str:
        return " AND ".join(f"({clause})" for clause in self.clauses) if self.clauses else "TRUE"


@dataclass(frozen=True, slots=True)
class Ordering:
    """A stable keyset ordering: columns with one direction, the primary key last."""

    name: str
    columns: tuple[str, ...]
    descending: bool
    # The Python type of each column's value, so a cursor's values are checked on the way in.
    types: tuple[type, ...] = ()

    def __post_init__(self) -> None:
        if len(self.types) != len(self.columns):
            raise ValueError(f"ordering {self.name}: give a type for each column")

    def order_by(self, backward: bool) -> str:
        descending = self.descending != backward
        direction = "DESC" if descending else "ASC"
        return ", ".join(f"{column} {direction}" for column in self.columns)

    def after(self, conditions: Conditions, key: Sequence[Any], backward: bool) -> None:
        """Rows strictly after ``key`` in reading order (before it when paging backward)."""
        descending = self.descending != backward
        holes = ", ".join("{}" for _ in self.columns)
        operator = "<" if descending else ">"
        conditions.add(f"({', '.join(self.columns)}) {operator} ({holes})", *key)


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    cursor: tuple[Any, ...] | None
    backward: bool


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_next: bool
    has_previous: bool


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"t"} and isinstance(value["t"], str):
        return datetime.fromisoformat(value["t"])
    return value


def encode_cursor(ordering: Ordering, key: Sequence[Any]) -> str:
    payload = orjson.dumps([ordering.name, *(_encode_value(value) for value in key)])
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(ordering: Ordering, cursor: str, field: str) -> tuple[Any, ...]:
    """Decode a cursor made by ``encode_cursor`` for the same ordering, or raise InvalidInput."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        name, *raw = payload
        values = tuple(_decode_value(value) for value in raw)
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
        raise InvalidInput(field, "is not a cursor this API issued") from None
    if name != ordering.name:
        raise InvalidInput(field, f"was issued for ordering {name}, not {ordering.name}")
    if len(values) != len(ordering.columns):
        raise InvalidInput(field, "is not a cursor this API issued")
    for value, expected in zip(values, ordering.types, strict=True):
        if not _fits(value, expected):
            raise InvalidInput(field, "is not a cursor this API issued")
    return values


def _fits(value: Any, expected: type) -> bool:
    """Whether a decoded cursor value can stand for a column of type ``expected``."""
    if expected is int:
        return type(value) is int and -(2**63) <= value < 2**63
    if expected is datetime:
        return isinstance(value, datetime) and value.tzinfo is not None
    if expected is str:
        return isinstance(value, str) and len(value) <= 1000 and "\x00" not in value
    return isinstance(value, expected)


def page_request(
    ordering: Ordering,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    default_size: int,
    max_size: int,
) -> PageRequest:
    """Validate Relay paging arguments (``first``/``after`` forward, ``last``/``before`` back)."""
    if first is not None and last is not None:
        raise InvalidInput("first", "pass either first or last, not both")
    if after is not None and before is not None:
        raise InvalidInput("after", "pass either after or before, not both")
    backward = last is not None or before is not None
    if backward and (first is not None or after is not None):
        raise InvalidInput("last", "page backward with last/before, forward with first/after")
    size = last if backward else first
    name = "last" if backward else "first"
    if size is None:
        size = default_size
    if size < 0:
        raise InvalidInput(name, "must not be negative")
    if size > max_size:
        raise InvalidInput(name, f"{size} exceeds the page size limit of {max_size}")
    cursor_text = before if backward else after
    cursor = None
    if cursor_text is not None:
        cursor = decode_cursor(ordering, cursor_text, "before" if backward else "after")
    return PageRequest(limit=size, cursor=cursor, backward=backward)


def finish_page(rows: list[T], request: PageRequest) -> Page[T]:
    """Trim the look-ahead row and put a backward page back into reading order."""
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    if request.backward:
        rows.reverse()
        return Page(rows, has_next=request.cursor is not None, has_previous=more)
    return Page(rows, has_next=more, has_previous=request.cursor is not None)


def like_pattern(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, its wildcards and escapes taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
