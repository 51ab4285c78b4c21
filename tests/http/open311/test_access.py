"""Open311 reads and writes under the graph's rules: what an app sees is what its bureau's
services see, never personal data, through the same audit record; keys are checked on every
request; every bad parameter is refused in the specification's format and changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.auth.api_keys import new_key
from api.repositories.open311 import Open311Clients
from tests.graph.helpers import create_incident, key_of
from tests.http.open311.conftest import BASE, FORM, IssueKey, audit_records, evidence_frame, only
from tests.http.open311.test_spec import KEY_REFUSED, SUBMISSION, submit
from tests.support import DatabaseUnderTest, GatewayProcess, GraphQLClient
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db


async def ids(http: httpx.AsyncClient, **auth: Any) -> list[str]:
    headers = auth.pop("headers", {})
    answer = await http.get(f"{BASE}/requests.json", params=auth, headers=headers)
    assert answer.status_code == 200, answer.text
    return [request["service_request_id"] for request in answer.json()]


async def test_an_app_sees_what_its_bureaus_services_see(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, as_: Callable[[str], GraphQLClient]
) -> None:
    pothole = await create_incident(as_("pwb-supervisor"), category="POTHOLE")
    dumping = await create_incident(as_("epb-supervisor"), category="ILLEGAL_DUMPING")
    public_works, citywide = await issue_key("PUBLIC_WORKS"), await issue_key("RDEC")
    pwb_case = pothole["incident"]["caseNumber"]
    epb_case = dumping["incident"]["caseNumber"]

    assert await ids(http, api_key=public_works) == [pwb_case]
    assert await ids(http, api_key=citywide) == [epb_case, pwb_case]
    hidden = await http.get(f"{BASE}/requests/{epb_case}.json", params={"api_key": public_works})
    assert hidden.status_code == 404
    assert only(hidden.json())["code"] == 404
    # A bearer token works as it does on the graph.
    police = {"authorization": f"Bearer {as_('police-viewer').token}"}
    assert await ids(http, headers=police) == []


async def test_reads_are_audited_as_the_graphs_are(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, owner: asyncpg.Connection
) -> None:
    key = await issue_key("RDEC")
    created = await submit(http, key)
    incident_id = int(created["service_request_id"].removeprefix("KH-"))
    await ids(http, api_key=key)
    records = await audit_records(owner, "GET /open311/v2/requests", key)
    assert len(records) == 1
    record = records[-1]
    client_id = await owner.fetchval(
        "SELECT client_id FROM lighthouse.open311_request WHERE incident_id = $1", incident_id
    )
    assert record["subject"] == f"open311:{client_id}"
    assert record["decision"] == "ALLOW"
    assert f"Incident:{incident_id}" in record["resource_ids"]
    assert len(await audit_records(owner, "POST /open311/v2/requests", key)) == 1


async def test_revoked_and_unknown_keys_are_refused_at_once_and_alike(
    http: httpx.AsyncClient,
    clean: None,
    issue_key: IssueKey,
    owner: asyncpg.Connection,
    log_path: Path,
) -> None:
    key = await issue_key("RDEC")
    assert await ids(http, api_key=key) == []
    name = await owner.fetchval(
        "SELECT name FROM lighthouse.open311_client ORDER BY id DESC LIMIT 1"
    )
    assert await Open311Clients(owner).revoke(name)
    unknown = new_key()  # well formed, never issued
    for fmt in ("json", "xml"):
        answers = [
            await http.get(f"{BASE}/requests.{fmt}", params={"api_key": presented})
            for presented in (key, unknown, "l311_" + "A" * 500, "not-even-a-key")
        ]
        # A key that was once good is not told apart from one that never was.
        assert {(a.status_code, a.headers["content-type"], a.content) for a in answers} == {
            (answers[0].status_code, answers[0].headers["content-type"], answers[0].content)
        }
        assert answers[0].status_code == 403
        if fmt == "json":
            assert only(answers[0].json()) == {"code": 403, "description": KEY_REFUSED}
        else:
            assert f"<code>403</code><description>{KEY_REFUSED}</description>" in answers[0].text
    # The gateway's own log tells them apart.
    for reason in ("the api_key has been revoked", "the api_key is not one this city issued"):
        await logged(log_path, "open311.api_key_refused", reason)


async def logged(log: Path, event: str, reason: str) -> None:
    """Wait (a little) for the gateway to log ``event`` with ``reason``."""
    for _ in range(50):
        for line in (await asyncio.to_thread(log.read_text)).splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == event and entry.get("reason") == reason:
                    return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{event} ({reason}) is not in the gateway's log")


async def test_only_keys_issued_for_submitting_submit(
    http: httpx.AsyncClient,
    clean: None,
    issue_key: IssueKey,
    owner: asyncpg.Connection,
    tokens: TokenFactory,
) -> None:
    read_only = await issue_key("RDEC", submit=False)
    refused = await http.post(
        f"{BASE}/requests.json", data={**SUBMISSION, "api_key": read_only}, headers=FORM
    )
    assert refused.status_code == 403, refused.text
    # Staff report through the graph; Open311 submissions come from the city's apps.
    staff = await http.post(
        f"{BASE}/requests.json",
        data=SUBMISSION,
        headers={**FORM, "authorization": f"Bearer {tokens.named('pwb-supervisor')}"},
    )
    assert staff.status_code == 403
    assert "api_key" in only(staff.json())["description"]
    anonymous = await http.post(f"{BASE}/requests.json", data=SUBMISSION, headers=FORM)
    assert anonymous.status_code == 403
    assert await owner.fetchval("SELECT count(*) FROM lighthouse.incident") == 0


BAD_SUBMISSIONS = {
    "no service_code": ({"service_code": ""}, 400, "service_code: is required"),
    "an unknown service_code": ({"service_code": "UFO"}, 404, "service_code UFO does not exist"),
    "an address only": ({"lat": "", "long": ""}, 400, "the city does not geocode addresses"),
    "no location": (
        {"lat": "", "long": "", "address_string": ""},
        400,
        "give the location as lat and long",
    ),
    "lat out of range": ({"lat": "91"}, 400, "91.0 is outside [-90, 90]"),
    "lat not a number": ({"lat": "north"}, 400, "lat: must be a decimal number"),
    "lat infinite": ({"lat": "inf"}, 400, "lat: must be a finite number"),
    "a long description": ({"description": "x" * 4001}, 400, "at most 4000 characters"),
    "a bad e-mail": ({"email": "not-an-address"}, 400, "is not an e-mail address"),
    "a bad phone": ({"phone": "call me maybe"}, 400, "is not a telephone number"),
    "another jurisdiction": ({"jurisdiction_id": "city.gov"}, 404, "jurisdiction_id city.gov"),
}


@pytest.mark.parametrize("case", sorted(BAD_SUBMISSIONS))
async def test_bad_submissions_change_nothing(
    http: httpx.AsyncClient,
    clean: None,
    issue_key: IssueKey,
    owner: asyncpg.Connection,
    case: str,
) -> None:
    key = await issue_key("RDEC")
    changes, status, reason = BAD_SUBMISSIONS[case]
    form = {**SUBMISSION, "api_key": key, **changes}
    for fmt in ("json", "xml"):
        answer = await http.post(f"{BASE}/requests.{fmt}", data=form, headers=FORM)
        assert answer.status_code == status, answer.text
        assert reason in answer.text
    counts = await owner.fetchrow(
        "SELECT (SELECT count(*) FROM lighthouse.incident) AS incidents,"
        " (SELECT count(*) FROM lighthouse.open311_request) AS requests,"
        " (SELECT count(*) FROM lighthouse.incident_reporter) AS reporters"
    )
    assert dict(counts) == {"incidents": 0, "requests": 0, "reporters": 0}
    # The refusal is on the record.
    refusals = await audit_records(owner, "POST /open311/v2/requests", key)
    assert len(refusals) == 2
    assert all('"outcome"' in refusal["payload"] for refusal in refusals)


async def test_bad_bodies_are_refused_unread(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, owner: asyncpg.Connection
) -> None:
    key = await issue_key("RDEC")
    as_json = await http.post(f"{BASE}/requests.json", json={**SUBMISSION, "api_key": key})
    # The key is looked for in the form only; a JSON body is not a form.
    assert as_json.status_code == 403
    with_key = await http.post(f"{BASE}/requests.json", params={"api_key": key}, json=SUBMISSION)
    assert with_key.status_code == 400
    assert "application/x-www-form-urlencoded" in with_key.text
    crowded = {**SUBMISSION, "api_key": key, **{f"attribute[A{i}]": "1" for i in range(80)}}
    too_many = await http.post(f"{BASE}/requests.json", data=crowded, headers=FORM)
    assert too_many.status_code == 400
    assert "at most 64 parameters" in too_many.text
    # (A body over the limit: test_limits.py.)
    assert await owner.fetchval("SELECT count(*) FROM lighthouse.incident") == 0


BAD_QUERIES = {
    "a status": ({"status": "pending"}, "status: must be open or closed"),
    "a date": ({"start_date": "yesterday"}, "start_date: must be a W3C date and time"),
    "a date without a zone": ({"end_date": "2026-01-01T00:00:00"}, "must include a time zone"),
    "a backwards range": (
        {"start_date": "2026-02-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"},
        "end_date: is before start_date",
    ),
    "a range over 90 days": (
        {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"},
        "at most 90 days",
    ),
    "too many ids": (
        {"service_request_id": ",".join(f"KH-{i:08d}" for i in range(201))},
        "service_request_id: name at most 200",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_QUERIES))
async def test_bad_queries_are_refused(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, case: str
) -> None:
    key = await issue_key("RDEC")
    query, reason = BAD_QUERIES[case]
    for fmt in ("json", "xml"):
        answer = await http.get(f"{BASE}/requests.{fmt}", params={"api_key": key, **query})
        assert answer.status_code == 400, answer.text
        assert reason in answer.text


async def test_a_retry_with_the_same_idempotency_key_answers_the_first(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, owner: asyncpg.Connection
) -> None:
    key = await issue_key("RDEC")
    form = {**SUBMISSION, "api_key": key}
    headers = {**FORM, "idempotency-key": "app-retry-1"}
    first = await http.post(f"{BASE}/requests.json", data=form, headers=headers)
    again = await http.post(f"{BASE}/requests.json", data=form, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert await owner.fetchval("SELECT count(*) FROM lighthouse.incident") == 1
    changed = await http.post(
        f"{BASE}/requests.json", data={**form, "description": "another"}, headers=headers
    )
    assert changed.status_code == 422
    assert await owner.fetchval("SELECT count(*) FROM lighthouse.incident") == 1


# Each a change to one parameter of SUBMISSION (or one added): a different request.
CHANGES = {
    "address_string": {"address_string": "高雄市前鎮區中山二路 2 號"},
    "an attribute": {"attribute[WHISPAWN]": "654321"},
    "another attribute": {"attribute[NEW]": "1"},
    "address_id": {"address_id": "A-12"},
    "first and last name": {"first_name": "john smith", "last_name": ""},
    "device_id": {"device_id": "tt222112"},
    "media_url": {"media_url": "http://example.org/another.jpg"},
    "a parameter left out": {"account_id": ""},
}


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_changed_request_under_a_used_key_is_refused(
    http: httpx.AsyncClient,
    clean: None,
    issue_key: IssueKey,
    owner: asyncpg.Connection,
    change: str,
) -> None:
    key = await issue_key("RDEC")
    form = {**SUBMISSION, "api_key": key}
    headers = {**FORM, "idempotency-key": "app-retry-2"}
    first = await http.post(f"{BASE}/requests.json", data=form, headers=headers)
    assert first.status_code == 201, first.text
    for fmt in ("json", "xml"):
        changed = await http.post(
            f"{BASE}/requests.{fmt}", data={**form, **CHANGES[change]}, headers=headers
        )
        assert changed.status_code == 422, changed.text
        if fmt == "json":
            error = only(changed.json())
            assert error["code"] == 422
        else:
            assert "<errors><error><code>422</code>" in changed.text
        assert "'app-retry-2' was already used for a different request" in changed.text
    assert await owner.fetchval("SELECT count(*) FROM lighthouse.incident") == 1
    # The same request again still answers the first.
    again = await http.post(f"{BASE}/requests.json", data=form, headers=headers)
    assert (again.status_code, again.json()) == (200, first.json())


async def test_media_url_only_for_those_who_may_see_the_frame(
    http: httpx.AsyncClient,
    clean: None,
    issue_key: IssueKey,
    client: GraphQLClient,
    database: DatabaseUnderTest,
    gateway: GatewayProcess,
) -> None:
    created = await create_incident(client, category="POTHOLE")
    incident_id = key_of(created["incident"]["id"])
    frame = await evidence_frame(client, database, gateway, incident_id)
    case = created["incident"]["caseNumber"]

    key = await issue_key("RDEC")
    as_app = only((await http.get(f"{BASE}/requests/{case}.json", params={"api_key": key})).json())
    assert as_app["media_url"] is None
    staff = {"authorization": f"Bearer {client.token}"}  # Public Works, pii:read
    as_staff = only((await http.get(f"{BASE}/requests/{case}.json", headers=staff)).json())
    assert as_staff["media_url"] == f"{gateway.base_url}/frames/{frame.key}"
    image = await http.get(as_staff["media_url"], headers=staff)
    assert image.status_code == 200
    assert image.content == frame.image
