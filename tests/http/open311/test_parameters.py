"""What a parameter may hold, and how far back a read reaches: control characters are refused at
the edge in the specification's error format (a NUL reached PostgreSQL and failed the request
with an internal error), and every date window is at most 90 days, whichever bounds are sent."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from tests.http.open311.conftest import BASE, FORM, IssueKey, only
from tests.http.open311.test_spec import SUBMISSION
from tests.support import GatewayProcess, client_from, stranger_address

# Not `db` (pyproject.toml's rule): the characters are refused in Python, before any SQL.


def refused_with_400(answer: httpx.Response, fmt: str, *names: str) -> str:
    """The specification's 400 error document (JSON or XML), naming ``names``; its description."""
    assert answer.status_code == 400, answer.text
    assert answer.headers["x-request-id"]
    if fmt == "json":
        assert answer.headers["content-type"] == "application/json; charset=utf-8"
        error = only(answer.json())
        assert list(error) == ["code", "description"]
        assert error["code"] == 400
        description: str = error["description"]
    else:
        assert answer.headers["content-type"] == "text/xml; charset=utf-8"
        document = ET.fromstring(answer.content)
        assert document.tag == "errors"
        [error_element] = list(document)
        assert [child.tag for child in error_element] == ["code", "description"]
        assert error_element.findtext("code") == "400"
        description = error_element.findtext("description") or ""
    for name in names:
        assert name in description, description
    return description


async def nothing_kept(owner: asyncpg.Connection) -> None:
    counts = await owner.fetchrow(
        "SELECT (SELECT count(*) FROM lighthouse.incident) AS incidents,"
        " (SELECT count(*) FROM lighthouse.open311_request) AS requests,"
        " (SELECT count(*) FROM lighthouse.incident_reporter) AS reporters,"
        " (SELECT count(*) FROM lighthouse.idempotency_key) AS keys"
    )
    assert dict(counts) == {"incidents": 0, "requests": 0, "reporters": 0, "keys": 0}


# Every text parameter of a POST, each with a NUL (or another control character) in it.
POSTED = [
    "service_code",
    "description",
    "address_string",
    "first_name",
    "last_name",
    "device_id",
    "account_id",
    "email",
    "phone",
    "media_url",
    "jurisdiction_id",
    "attribute[WHISPAWN]",
]


@pytest.mark.parametrize("name", POSTED)
@pytest.mark.parametrize("control", ["\x00", "\x1b"], ids=["nul", "escape"])
async def test_a_control_character_in_a_posted_parameter_is_a_400(
    http: httpx.AsyncClient,
    clean: None,
    issue_key: IssueKey,
    owner: asyncpg.Connection,
    name: str,
    control: str,
) -> None:
    key = await issue_key("RDEC")
    value = SUBMISSION[name]
    form = {**SUBMISSION, "api_key": key, name: value[:3] + control + value[3:]}
    for fmt in ("json", "xml"):
        answer = await http.post(
            f"{BASE}/requests.{fmt}",
            data=form,
            headers={**FORM, "idempotency-key": f"control-{fmt}"},
        )
        description = refused_with_400(answer, fmt, name)
        assert f"U+{ord(control):04X}" in description
    await nothing_kept(owner)


async def test_free_text_may_break_lines_and_nothing_else_may(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, owner: asyncpg.Connection
) -> None:
    key = await issue_key("RDEC")
    lines = {"description": "坑洞\r\n在路口\t左側", "address_string": "苓雅區\n中正一路 120 號"}
    accepted = await http.post(
        f"{BASE}/requests.json", data={**SUBMISSION, **lines, "api_key": key}, headers=FORM
    )
    assert accepted.status_code == 201, accepted.text
    kept = await owner.fetchrow(
        "SELECT i.description, o.address FROM lighthouse.incident i"
        " JOIN lighthouse.open311_request o ON o.incident_id = i.id"
    )
    assert dict(kept) == {
        "description": "坑洞\r\n在路口\t左側",
        "address": "苓雅區\n中正一路 120 號",
    }
    broken = await http.post(
        f"{BASE}/requests.json",
        data={**SUBMISSION, "first_name": "jo\nhn", "api_key": key},
        headers=FORM,
    )
    refused_with_400(broken, "json", "first_name")
    assert await owner.fetchval("SELECT count(*) FROM lighthouse.incident") == 1


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"service_code": "POT\x00HOLE"}, "service_code"),
        ({"status": "op\x00en"}, "status"),
        ({"start_date": "2026-12-01T00:00:00\x00+08:00"}, "start_date"),
        ({"service_request_id": "KH-00000001\x00"}, "service_request_id"),
        ({"jurisdiction_id": "kaohsiung.gov.tw\x00"}, "jurisdiction_id"),
        ({"unheard_of": "\x00"}, "unheard_of"),
        ({"na\x00me": "value"}, "parameters"),
    ],
    ids=["service_code", "status", "start_date", "ids", "jurisdiction", "unknown", "a-name"],
)
async def test_a_nul_in_a_query_parameter_is_a_400(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, query: dict[str, str], name: str
) -> None:
    key = await issue_key("RDEC")
    for fmt in ("json", "xml"):
        answer = await http.get(f"{BASE}/requests.{fmt}", params={"api_key": key, **query})
        refused_with_400(answer, fmt, name)
    services = await http.get(f"{BASE}/services.json", params=query)
    refused_with_400(services, "json", name)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("services/POT%00HOLE", "service_code"),
        ("requests/KH-0000%0001", "service_request_id"),
        ("tokens/%00", "token"),
    ],
)
async def test_a_nul_in_a_path_parameter_is_a_400(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, path: str, name: str
) -> None:
    key = await issue_key("RDEC")
    for fmt in ("json", "xml"):
        answer = await http.get(f"{BASE}/{path}.{fmt}", params={"api_key": key})
        refused_with_400(answer, fmt, name)


# --- date windows ----------------------------------------------------------------------------

ARRANGE_INCIDENT = """
INSERT INTO lighthouse.incident (title, category, status, source, responsible_bureau_id,
    reporting_bureau_id, latitude, longitude, reported_at, due_at, created_by)
SELECT '坑洞', 'POTHOLE', 'VERIFIED', 'STAFF', b.id, b.id, 22.6273, 120.3014, $1::timestamptz,
    $1 + interval '2 days', 'arranged'
FROM lighthouse.bureau b WHERE b.code = 'PUBLIC_WORKS'
RETURNING 'KH-' || lpad(id::text, 8, '0')
"""
# Incidents reported this many days ago: more than 90 days of them.
AGES = (1, 60, 100, 150, 200, 400)


async def test_every_window_spans_at_most_90_days(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, owner: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    cases = {age: await owner.fetchval(ARRANGE_INCIDENT, now - timedelta(days=age)) for age in AGES}
    key = await issue_key("RDEC")

    def ago(days: int) -> str:
        return (now - timedelta(days=days)).isoformat(timespec="seconds")

    async def ages(**query: str) -> list[int]:
        answer = await http.get(f"{BASE}/requests.json", params={"api_key": key, **query})
        assert answer.status_code == 200, answer.text
        found = [r["service_request_id"] for r in answer.json()]
        return [age for age in AGES if cases[age] in found]

    # Neither bound: the last 90 days.
    assert await ages() == [1, 60]
    # start_date alone: 90 days from it, and never past now.
    assert await ages(start_date=ago(200)) == [150, 200]
    assert await ages(start_date=ago(30)) == [1]
    # end_date alone: the 90 days up to it.
    assert await ages(end_date=ago(90)) == [100, 150]
    assert await ages(end_date=ago(300)) == []
    # Both, at most 90 days apart.
    assert await ages(start_date=ago(160), end_date=ago(90)) == [100, 150]
    assert await ages(start_date=ago(90), end_date=ago(0)) == [1, 60]

    # Both, further apart: refused, naming both.
    wide = {"start_date": ago(410), "end_date": ago(0)}
    for fmt in ("json", "xml"):
        answer = await http.get(f"{BASE}/requests.{fmt}", params={"api_key": key, **wide})
        refused_with_400(answer, fmt, "start_date", "end_date", "90 days")


@pytest.mark.parametrize("path", ["services/POT%00HOLE", "requests/KH-0000%0001", "tokens/%00"])
async def test_a_nul_in_the_path_of_a_refused_key_is_recorded_and_a_403(
    gateway: GatewayProcess, clean: None, owner: asyncpg.Connection, path: str
) -> None:
    # The refusal is audited (with the path) before the route runs: the first from an address
    # at once.
    for fmt in ("json", "xml"):
        async with client_from(gateway.base_url, stranger_address()) as stranger:
            answer = await stranger.get(f"{BASE}/{path}.{fmt}", params={"api_key": "l311_x"})
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"].startswith(("application/json", "text/xml"))
    recorded = f"{BASE}/{path}.json"
    for _ in range(50):
        found = await owner.fetchval(
            "SELECT count(*) FROM lighthouse.audit_record WHERE operation = $1", recorded
        )
        if found:
            break
        await asyncio.sleep(0.1)
    assert found == 1, f"no refusal of {recorded} on the record"
