"""GeoReport v2 as the specification shows it: each example request of the specification, sent
in JSON and in XML, answered with the fields the specification's example responses hold, in
its element names and order (wiki.open311.org/GeoReport_v2)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.graph.helpers import act, create_incident, key_of
from tests.http.open311.conftest import BASE, FORM, IssueKey, only
from tests.support import GraphQLClient

SERVICE_FIELDS = [
    "service_code", "service_name", "description", "metadata", "type", "keywords", "group",
]  # fmt: skip
REQUEST_FIELDS = [
    "service_request_id", "status", "status_notes", "service_name", "service_code",
    "description", "agency_responsible", "service_notice", "requested_datetime",
    "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat", "long",
    "media_url",
]  # fmt: skip
# The specification's example POST, in Kaohsiung: its parameters, with a category of ours and
# a place in the city (the specification's attribute[...] are sent too; no service asks for any).
SUBMISSION = {
    "jurisdiction_id": "kaohsiung.gov.tw",
    "service_code": "POTHOLE",
    "lat": "22.62735",
    "long": "120.30142",
    "address_string": "高雄市苓雅區中正一路 120 號",
    "email": "smit333@example.org",
    "device_id": "tt222111",
    "account_id": "123456",
    "first_name": "john",
    "last_name": "smith",
    "phone": "111111111",
    "description": "A large sinkhole is destroying the street",
    "media_url": "http://example.org/2212426634_5ed477a060.jpg",
    "attribute[WHISPAWN]": "123456",
    "attribute[WHISDORN]": "COISL001",
}
# One answer for every key that does not stand: unknown, revoked or malformed alike.
KEY_REFUSED = "the api_key is not valid: send the key the city issued your app"
PERSONAL = ("smit333@example.org", "tt222111", "111111111", "john", "smith", "2212426634")


def xml_of(response: httpx.Response, root: str) -> ET.Element:
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    element = ET.fromstring(response.content)
    assert element.tag == root
    return element


def json_of(response: httpx.Response) -> Any:
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    return response.json()


def fields(element: ET.Element) -> dict[str, str | None]:
    return {child.tag: child.text for child in element}


def as_text(value: Any) -> str | None:
    """A JSON value as the XML document writes it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def submit(http: httpx.AsyncClient, key: str, fmt: str = "json", **extra: str) -> Any:
    response = await http.post(
        f"{BASE}/requests.{fmt}", data={**SUBMISSION, "api_key": key, **extra}, headers=FORM
    )
    assert response.status_code == 201, response.text
    if fmt == "json":
        return only(json_of(response))
    return fields(xml_of(response, "service_requests")[0])


async def test_services_list_the_routing_table_in_json_and_xml(
    http: httpx.AsyncClient, clean: None
) -> None:
    # GET https://[API endpoint]/services.[format]?jurisdiction_id=...
    query = "?jurisdiction_id=kaohsiung.gov.tw"
    listed = json_of(await http.get(f"{BASE}/services.json{query}"))
    assert [list(service) for service in listed] == [SERVICE_FIELDS] * len(listed)
    by_code = {service["service_code"]: service for service in listed}
    assert len(by_code) == 13
    assert by_code["POTHOLE"] == {
        "service_code": "POTHOLE",
        "service_name": "道路坑洞",
        "description": "Pothole. Handled by 高雄市政府工務局.",
        "metadata": False,
        "type": "realtime",
        "keywords": "pothole, 道路坑洞, Pothole",
        "group": "高雄市政府工務局",
    }
    assert by_code["WATER_MAIN_LEAK"]["group"] == "台灣自來水公司"

    document = xml_of(await http.get(f"{BASE}/services.xml{query}"), "services")
    assert [child.tag for child in document] == ["service"] * len(listed)
    assert [fields(child) for child in document] == [
        {name: as_text(value) for name, value in service.items()} for service in listed
    ]

    english = json_of(
        await http.get(f"{BASE}/services.json", headers={"accept-language": "en-GB,en;q=0.8"})
    )
    pothole = next(s for s in english if s["service_code"] == "POTHOLE")
    assert (pothole["service_name"], pothole["group"]) == ("Pothole", "Public Works Bureau")


async def test_service_definition_in_json_and_xml(http: httpx.AsyncClient, clean: None) -> None:
    # GET https://[API endpoint]/services/[service_code].[format]
    assert json_of(await http.get(f"{BASE}/services/FLOODING.json")) == {
        "service_code": "FLOODING",
        "attributes": [],
    }
    document = xml_of(await http.get(f"{BASE}/services/FLOODING.xml"), "service_definition")
    assert [(child.tag, child.text, list(child)) for child in document] == [
        ("service_code", "FLOODING", []),
        ("attributes", None, []),
    ]
    for fmt in ("json", "xml"):
        missing = await http.get(f"{BASE}/services/NO_SUCH_THING.{fmt}")
        assert missing.status_code == 404


async def test_posting_a_request_as_the_specification_shows(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, owner: Any
) -> None:
    key = await issue_key("RDEC")
    created = await submit(http, key)
    # service_request_id (and a token, for clients written for batch services), the notice,
    # and the account_id the client sent.
    assert list(created) == ["service_request_id", "token", "service_notice", "account_id"]
    assert created["service_request_id"].startswith("KH-")
    assert created["account_id"] == "123456"
    assert created["service_notice"].startswith("Routed to 高雄市政府工務局; expected by ")

    incident_id = int(created["service_request_id"].removeprefix("KH-"))
    row = await owner.fetchrow(
        "SELECT i.category, i.source, i.status, i.description, i.latitude, i.longitude,"
        " b.code AS bureau, r.name, r.email, r.phone, r.personal_note, o.address, o.token"
        " FROM lighthouse.incident i JOIN lighthouse.bureau b ON b.id = i.responsible_bureau_id"
        " JOIN lighthouse.incident_reporter r ON r.incident_id = i.id"
        " JOIN lighthouse.open311_request o ON o.incident_id = i.id WHERE i.id = $1",
        incident_id,
    )
    assert dict(row) | {"token": str(row["token"])} == {
        "category": "POTHOLE",
        "source": "CITIZEN_1999",
        "status": "VERIFIED",
        "description": "A large sinkhole is destroying the street",
        "latitude": 22.62735,
        "longitude": 120.30142,
        "bureau": "PUBLIC_WORKS",
        "name": "john smith",
        "email": "smit333@example.org",
        "phone": "111111111",
        "personal_note": "device_id: tt222111; account_id: 123456; "
        "media_url: http://example.org/2212426634_5ed477a060.jpg",
        "address": "高雄市苓雅區中正一路 120 號",
        "token": created["token"],
    }

    in_xml = await submit(http, key, "xml", description="第二件")
    assert list(in_xml) == ["service_request_id", "token", "service_notice", "account_id"]
    assert in_xml["service_request_id"] != created["service_request_id"]


async def test_requests_read_as_the_specification_shows(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, client: GraphQLClient
) -> None:
    key = await issue_key("RDEC")
    created = await submit(http, key)
    request_id = created["service_request_id"]
    # GET requests.[format]?start_date=...&end_date=...&status=open&jurisdiction_id=...
    now = datetime.now().astimezone()
    window = {
        "start_date": (now - timedelta(days=1)).isoformat(timespec="seconds"),
        "end_date": (now + timedelta(minutes=1)).isoformat(timespec="seconds"),
        "status": "open",
        "jurisdiction_id": "kaohsiung.gov.tw",
        "api_key": key,
    }
    listed = json_of(await http.get(f"{BASE}/requests.json", params=window))
    request = only(listed)
    assert list(request) == REQUEST_FIELDS
    requested = datetime.fromisoformat(request["requested_datetime"])
    expected = datetime.fromisoformat(request["expected_datetime"])
    assert request == {
        "service_request_id": request_id,
        "status": "open",
        "status_notes": "Verified (通報): awaiting dispatch to a crew",
        "service_name": "道路坑洞",
        "service_code": "POTHOLE",
        "description": "A large sinkhole is destroying the street",
        "agency_responsible": "高雄市政府工務局",
        "service_notice": created["service_notice"],
        "requested_datetime": request["requested_datetime"],
        "updated_datetime": request["updated_datetime"],
        "expected_datetime": request["expected_datetime"],
        "address": "高雄市苓雅區中正一路 120 號",
        "address_id": None,
        "zipcode": None,
        "lat": 22.62735,
        "long": 120.30142,
        "media_url": None,
    }
    # W3C date and time in the city's zone; the SLA (two working days) is ahead.
    assert request["requested_datetime"].endswith("+08:00")
    assert abs(requested - now) < timedelta(minutes=1)
    assert expected > requested + timedelta(days=1)

    document = xml_of(await http.get(f"{BASE}/requests.xml", params=window), "service_requests")
    assert [child.tag for child in document] == ["request"]
    assert fields(document[0]) == {name: as_text(value) for name, value in request.items()}

    # GET requests/[service_request_id].[format]: the same wrapper, one request.
    one = json_of(await http.get(f"{BASE}/requests/{request_id}.json", params={"api_key": key}))
    assert one == [request]
    document = xml_of(
        await http.get(f"{BASE}/requests/{request_id}.xml", params={"api_key": key}),
        "service_requests",
    )
    assert [fields(child) for child in document] == [fields(document[0])]
    assert fields(document[0])["service_request_id"] == request_id

    # Reporters' personal data is never part of a request as Open311 shows it.
    for response in (
        await http.get(f"{BASE}/requests.json", params=window),
        await http.get(f"{BASE}/requests.xml", params=window),
    ):
        assert not [word for word in ("smit333", "tt222111", "111111111") if word in response.text]

    # Closed: the detailed state in status_notes.
    edges = (await client.data("{ incidents(first: 1) { edges { node { id version } } } }"))[
        "incidents"
    ]["edges"]
    incident = edges[0]["node"]
    assert key_of(incident["id"]) == int(request_id.removeprefix("KH-"))
    closed = await act(client, "CLOSE", incident, reason="FALSE_POSITIVE")
    assert closed["__typename"] == "IncidentUpdated", closed
    after = only(
        json_of(await http.get(f"{BASE}/requests/{request_id}.json", params={"api_key": key}))
    )
    assert (after["status"], after["status_notes"]) == (
        "closed",
        "Closed (結案): no problem was found",
    )
    assert after["updated_datetime"] >= request["updated_datetime"]
    assert json_of(await http.get(f"{BASE}/requests.json", params=window)) == []
    closed_only = json_of(
        await http.get(f"{BASE}/requests.json", params={**window, "status": "closed"})
    )
    assert [r["service_request_id"] for r in closed_only] == [request_id]


async def test_filters_by_ids_codes_and_statuses(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey, client: GraphQLClient
) -> None:
    key = await issue_key("RDEC")
    pothole = (await submit(http, key))["service_request_id"]
    flooding = (await submit(http, key, service_code="FLOODING"))["service_request_id"]
    staff = await create_incident(client, category="BROKEN_STREETLIGHT")
    light = staff["incident"]["caseNumber"]

    async def ids(**query: str) -> list[str]:
        answer = json_of(await http.get(f"{BASE}/requests.json", params={"api_key": key, **query}))
        return [r["service_request_id"] for r in answer]

    assert await ids() == [light, flooding, pothole]  # the last 90 days, newest first
    assert await ids(service_code="POTHOLE,FLOODING") == [flooding, pothole]
    assert await ids(status="closed") == []
    assert await ids(status="open,closed") == [light, flooding, pothole]
    # service_request_id overrides the other parameters; ids that name nothing match nothing.
    assert await ids(service_request_id=f"{pothole},KH-99999999,nonsense", status="closed") == [
        pothole
    ]
    long_ago = {"start_date": "2020-01-01T00:00:00+08:00", "end_date": "2020-02-01T00:00:00Z"}
    assert await ids(**long_ago) == []


@pytest.mark.db
async def test_tokens_name_their_request(
    http: httpx.AsyncClient, clean: None, issue_key: IssueKey
) -> None:
    key = await issue_key("RDEC")
    created = await submit(http, key)
    token = created["token"]
    # GET tokens/[token id].[format]
    answer = json_of(await http.get(f"{BASE}/tokens/{token}.json", params={"api_key": key}))
    assert answer == [{"service_request_id": created["service_request_id"], "token": token}]
    document = xml_of(
        await http.get(f"{BASE}/tokens/{token}.xml", params={"api_key": key}), "service_requests"
    )
    assert [fields(child) for child in document] == [
        {"service_request_id": created["service_request_id"], "token": token}
    ]
    for unknown in ("0b6e4b5e-8d2a-4a57-9c0e-2f1f0f1f0f1f", "not-a-token"):
        missing = await http.get(f"{BASE}/tokens/{unknown}.json", params={"api_key": key})
        assert missing.status_code == 404
        assert only(missing.json())["code"] == 404


async def test_errors_in_the_specifications_format(
    http: httpx.AsyncClient, clean: None, owner: Any
) -> None:
    # HTTP/1.1 403 Forbidden: [{"code":403,"description":"Invalid api_key received ..."}]
    bad_key = {**SUBMISSION, "api_key": "l311_not-a-key-this-city-issued"}
    before = await owner.fetchval("SELECT count(*) FROM lighthouse.incident")
    answer = await http.post(f"{BASE}/requests.json", data=bad_key, headers=FORM)
    assert answer.status_code == 403
    error = only(json_of(answer))
    assert list(error) == ["code", "description"]
    assert error == {"code": 403, "description": KEY_REFUSED}

    answer = await http.post(f"{BASE}/requests.xml", data=bad_key, headers=FORM)
    assert answer.status_code == 403
    document = xml_of(answer, "errors")
    assert [child.tag for child in document] == ["error"]
    assert fields(document[0]) == {
        "code": "403",
        "description": KEY_REFUSED,
    }
    assert await owner.fetchval("SELECT count(*) FROM lighthouse.incident") == before

    wrong_place = await http.get(f"{BASE}/services.xml", params={"jurisdiction_id": "city.gov"})
    assert wrong_place.status_code == 404
    assert fields(xml_of(wrong_place, "errors")[0])["code"] == "404"


@pytest.mark.parametrize("path", ["requests", "requests/KH-00000001", "tokens/abc"])
async def test_requests_are_not_read_anonymously(
    http: httpx.AsyncClient, clean: None, owner: Any, path: str
) -> None:
    before = await owner.fetchval("SELECT count(*) FROM lighthouse.audit_record")
    answer = await http.get(f"{BASE}/{path}.json")
    assert answer.status_code == 403
    assert only(json_of(answer))["description"].startswith("send the api_key the city issued")
    answer = await http.get(f"{BASE}/{path}.xml")
    assert answer.status_code == 403
    assert fields(xml_of(answer, "errors")[0])["code"] == "403"
    # Refused before any statement: an anonymous caller writes nothing.
    assert await owner.fetchval("SELECT count(*) FROM lighthouse.audit_record") == before
