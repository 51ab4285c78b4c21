"""SQL literals, for the few statements that must travel without parameters.

PostgreSQL's simple query protocol runs several statements in one round trip but takes no
parameters; the unit of work uses it to send a request's audit record with its COMMIT (see
``UnitOfWork.at_commit``). Values are written as typed literals here, never pasted: text is
dollar-quoted with a tag the text does not contain (what is inside a dollar quote is taken
literally, whatever ``standard_conforming_strings`` says), so no value can end its quote.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

Value = str | bool | int | datetime | Sequence[str] | None


def quoted(text: str) -> str:
    """``text`` as a dollar-quoted string constant."""
    if "\x00" in text:
        raise ValueError("PostgreSQL text cannot hold a NUL character")
    tag, n = "q", 0
    while f"${tag}$" in text or text.endswith(f"${tag}"):
        n += 1
        tag = f"q{n}"
    return f"${tag}${text}${tag}$"


def literal(value: Value, sql_type: str) -> str:
    """``value`` as a literal of ``sql_type`` (``text``, ``text[]``, ``boolean``, ``bigint``,
    ``timestamptz``); NULL for None."""
    if value is None:
        return f"NULL::{sql_type}"
    if isinstance(value, bool):
        if sql_type != "boolean":
            raise TypeError(f"a bool is not a {sql_type}")
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{int(value)}::{sql_type}"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a timestamp without a time zone is ambiguous")
        return f"{quoted(value.isoformat())}::{sql_type}"
    if isinstance(value, str):
        return f"{quoted(value)}::{sql_type}"
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise TypeError("only arrays of text are written as literals")
    return f"ARRAY[{', '.join(quoted(item) for item in items)}]::{sql_type}"


def call(function: str, arguments: Sequence[tuple[Value, str]]) -> str:
    """``SELECT function(arguments…)`` with each argument a literal of its type."""
    return f"SELECT {function}({', '.join(literal(v, t) for v, t in arguments)})"
