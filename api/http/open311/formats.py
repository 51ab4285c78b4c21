"""GeoReport v2's two representations of one document: XML (``<services><service>…``) and JSON
in the specification's "Spark convention" (the wrapper elements dropped, each list an array).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

import orjson
from starlette.responses import Response

Value = str | bool | int | float | datetime | None
# Characters XML 1.0 cannot carry at all (a description may hold anything a client sent).
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class Format(StrEnum):
    JSON = "json"
    XML = "xml"

    @property
    def media_type(self) -> str:
        return "application/json" if self is Format.JSON else "text/xml"


class Renderer:
    """Documents in one format, with datetimes in the city's time zone (W3C, with offset)."""

    def __init__(self, fmt: Format, zone: ZoneInfo) -> None:
        self.fmt = fmt
        self._zone = zone

    def listing(
        self, root: str, item: str, rows: Sequence[Mapping[str, Value]], status: int = 200
    ) -> Response:
        """``<root><item>…</item>…</root>``, or a JSON array of objects."""
        if self.fmt is Format.JSON:
            return self._json([self._plain(row) for row in rows], status)
        element = ET.Element(root)
        for row in rows:
            self._fill(ET.SubElement(element, item), row)
        return self._xml(element, status)

    def document(self, root: str, fields: Mapping[str, object]) -> Response:
        """One object (a service definition): ``<root>…</root>``, or a JSON object. A field
        holding a list of mappings is ``<field><singular>…</singular>…</field>``."""
        if self.fmt is Format.JSON:
            return self._json(fields, 200)
        element = ET.Element(root)
        for name, value in fields.items():
            child = ET.SubElement(element, name)
            if isinstance(value, list):
                for entry in value:
                    self._fill(ET.SubElement(child, name.removesuffix("s")), entry)
            else:
                child.text = self._text(value)  # type: ignore[arg-type]
        return self._xml(element, 200)

    def errors(self, status: int, description: str) -> Response:
        """The specification's error document: ``<errors><error><code/><description/>``."""
        return self.listing(
            "errors", "error", [{"code": status, "description": description}], status
        )

    def _fill(self, element: ET.Element, row: Mapping[str, Value]) -> None:
        for name, value in row.items():
            ET.SubElement(element, name).text = self._text(value)

    def _plain(self, row: Mapping[str, Value]) -> dict[str, object]:
        return {
            name: self._w3c(value) if isinstance(value, datetime) else value
            for name, value in row.items()
        }

    def _text(self, value: Value) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime):
            return self._w3c(value)
        return NOT_XML.sub("", str(value))

    def _w3c(self, value: datetime) -> str:
        return value.astimezone(self._zone).isoformat(timespec="seconds")

    def _json(self, value: object, status: int) -> Response:
        return Response(
            orjson.dumps(value), status_code=status, media_type="application/json; charset=utf-8"
        )

    def _xml(self, element: ET.Element, status: int) -> Response:
        body = '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(element, "unicode")
        return Response(body.encode(), status_code=status, media_type="text/xml; charset=utf-8")
