"""How the listing commands print what they list: a table for a person at a terminal,
tab-separated lines under a header line for a script reading a pipe, and with ``--json`` one
JSON array of objects (times in ISO 8601, lists as arrays) for anything else."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

AsJson = Annotated[bool, typer.Option("--json", help="Print a JSON array of objects.")]


def emit(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], as_json: bool) -> None:
    listed = [{column: row.get(column) for column in columns} for row in rows]
    if as_json:
        sys.stdout.write(orjson.dumps(listed, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    cells = [[_text(row[column]) for column in columns] for row in listed]
    out = Console()
    if not out.is_terminal:
        print("\t".join(columns))
        for line in cells:
            print("\t".join(value.replace("\t", " ").replace("\n", " ") for value in line))
        return
    table = Table(*columns)
    for line in cells:
        table.add_row(*(escape(value) for value in line))
    out.print(table)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(_text(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
