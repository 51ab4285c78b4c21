"""GeoReport v2's parameters, checked: each bad one is an ``InvalidInput`` naming it, and an
empty parameter counts as one not sent (as the specification asks).

No parameter may hold a control character: PostgreSQL's text cannot hold NUL at all (a NUL that
reached a statement failed it with an internal error), and the others have no business in a
code, a name or a date. Free text (a description, an address, an attribute's answer) may still
break lines and hold tabs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from api.domain import open311
from api.domain.errors import InvalidInput
from api.domain.open311 import RequestQuery, Submission

# A form with more fields than this is refused unparsed (the specification's fields, a few
# attributes, and room for clients' own).
MAX_FIELDS = 64
MAX_CODES = 100
SHORT_TEXT = 200
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_IDEMPOTENCY_KEY = 200
# C0 and C1 controls and DEL, and the two noncharacters XML cannot carry; free text may also
# hold tabs and line breaks.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ufffe\uffff]")
CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
FREE_TEXT = frozenset({"description", "address_string"})


def _free_text(name: str) -> bool:
    return name in FREE_TEXT or (name.startswith("attribute[") and name.endswith("]"))


def checked(name: str, value: str) -> str:
    """``value`` of the parameter ``name``, if it holds no control character it may not."""
    found = (CONTROL_IN_TEXT if _free_text(name) else CONTROL).search(value)
    if found is not None:
        raise InvalidInput(
            name, f"must not hold control characters (it holds U+{ord(found.group()):04X})"
        )
    return value


def parameters(text: str) -> dict[str, str]:
    """The first value of each non-empty parameter of a query string or form body."""
    try:
        pairs = parse_qsl(text, keep_blank_values=False, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise InvalidInput("parameters", f"send at most {MAX_FIELDS} parameters") from None
    found: dict[str, str] = {}
    for name, value in pairs:
        if CONTROL.search(name):
            raise InvalidInput("parameters", "a parameter's name holds a control character")
        if value.strip():
            found.setdefault(name, checked(name, value.strip()))
    return found


def idempotency_key(value: str | None) -> str | None:
    """The ``Idempotency-Key`` header's key, if the request has one."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidInput("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return checked("Idempotency-Key", value)


def api_key(text: str) -> str | None:
    """The first non-empty ``api_key`` of a query string or form body (bounded by the body
    limit); its other parameters are checked later, by the route."""
    for name, value in parse_qsl(text, keep_blank_values=False):
        if name == "api_key" and value.strip():
            return value.strip()
    return None


def _listed(params: Mapping[str, str], name: str, limit: int) -> tuple[str, ...] | None:
    value = params.get(name)
    if value is None:
        return None
    items = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if len(items) > limit:
        raise InvalidInput(name, f"name at most {limit}")
    if any(len(item) > SHORT_TEXT for item in items):
        raise InvalidInput(name, f"each must be at most {SHORT_TEXT} characters")
    return items


def _datetime(params: Mapping[str, str], name: str) -> datetime | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            name, "must be a W3C date and time (2026-05-01T00:00:00+08:00)"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput(name, "must include a time zone offset (…Z or …+08:00)")
    return parsed


def request_query(params: Mapping[str, str]) -> RequestQuery:
    ids = _listed(params, "service_request_id", open311.MAX_IDS)
    if ids is not None:
        # The specification: service_request_id overrides every other parameter. An id that
        # names no incident matches nothing.
        parsed = (open311.incident_id(value) for value in ids)
        return RequestQuery(ids=tuple(i for i in parsed if i is not None))
    statuses = _listed(params, "status", 2)
    if statuses is not None:
        unknown = set(statuses) - {open311.OPEN, open311.CLOSED}
        if unknown:
            raise InvalidInput("status", f"must be open or closed, not {sorted(unknown)[0]!r}")
    # The window's bounds (at most 90 days, whichever of the two is sent) are the desk's.
    return RequestQuery(
        service_codes=_listed(params, "service_code", MAX_CODES),
        statuses=frozenset(statuses) if statuses is not None else None,
        start=_datetime(params, "start_date"),
        end=_datetime(params, "end_date"),
    )


def _coordinate(params: Mapping[str, str], name: str) -> float:
    try:
        value = float(params[name])
    except ValueError:
        raise InvalidInput(name, "must be a decimal number of degrees (WGS84)") from None
    if not math.isfinite(value):
        raise InvalidInput(name, "must be a finite number")
    return value


def _text(params: Mapping[str, str], name: str, limit: int = SHORT_TEXT) -> str | None:
    value = params.get(name)
    if value is not None and len(value) > limit:
        raise InvalidInput(name, f"must be at most {limit} characters")
    return value


def submission(params: Mapping[str, str]) -> Submission:
    code = params.get("service_code")
    if code is None:
        raise InvalidInput("service_code", "is required")
    if "lat" not in params or "long" not in params:
        if "address_string" in params or "address_id" in params:
            raise InvalidInput(
                "lat", "lat and long are required: the city does not geocode addresses"
            )
        raise InvalidInput("lat", "give the location as lat and long (WGS84)")
    attributes = {
        name[len("attribute[") : -1]: value
        for name, value in params.items()
        if name.startswith("attribute[") and name.endswith("]")
    }
    return Submission(
        service_code=code[:SHORT_TEXT],
        lat=_coordinate(params, "lat"),
        long=_coordinate(params, "long"),
        address=_text(params, "address_string", 500),
        description=_text(params, "description", 4000) or "",
        email=_text(params, "email", 320),
        first_name=_text(params, "first_name"),
        last_name=_text(params, "last_name"),
        phone=_text(params, "phone", 40),
        device_id=_text(params, "device_id"),
        account_id=_text(params, "account_id"),
        media_url=_text(params, "media_url", 2000),
        attributes=attributes,
    )
