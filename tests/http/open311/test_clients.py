"""Open311 client libraries from PyPI against our endpoints: civicbot (JSON: services, requests,
tokens, and submitting with an api_key) and georeport (JSON and XML reads of the service list).

Neither library sends an api_key with its reads; civicbot takes the transport it sends through,
and the app's transport adds the key the city issued it (a citizen app holds one key for all its
users). georeport reads what needs no key: the services and their definitions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from civicbot.http import HttpError, HttpTransport, RateLimiter
from civicbot.open311 import Open311Client
from civicbot.registry import Endpoint
from georeport import GeoReport

from tests.http.open311.conftest import BASE, IssueKey
from tests.support import GatewayProcess


class KeyedTransport(HttpTransport):
    """civicbot's transport, sending the app's api_key with every read."""

    def __init__(self, key: str) -> None:
        super().__init__(rate_limiter=RateLimiter(min_interval=0))
        self._key = key

    def get_json(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        return super().get_json(url, {**(params or {}), "api_key": self._key}, headers)


def civicbot(gateway: GatewayProcess, key: str) -> Open311Client:
    endpoint = Endpoint(id="kaohsiung", name="Kaohsiung", base_url=f"{gateway.base_url}{BASE}")
    return Open311Client(endpoint, KeyedTransport(key), jurisdiction_id="kaohsiung.gov.tw")


async def test_civicbot_submits_and_reads_back(
    gateway: GatewayProcess, clean: None, issue_key: IssueKey
) -> None:
    app = civicbot(gateway, await issue_key("RDEC"))
    key = app.http._key  # type: ignore[attr-defined]

    services = await asyncio.to_thread(app.list_services)
    assert "BLOCKED_DRAIN" in {service["service_code"] for service in services}
    definition = await asyncio.to_thread(app.get_service_definition, "BLOCKED_DRAIN")
    assert definition == {"service_code": "BLOCKED_DRAIN", "attributes": []}

    def send() -> Any:
        return app.create_request(
            "BLOCKED_DRAIN",
            dry_run=False,
            confirm="SEND",
            api_key=key,
            validate_remote=True,
            lat=22.6301,
            lng=120.3115,
            description="側溝被落葉堵住",
            first_name="小明",
            last_name="王",
        ).response

    answer = await asyncio.to_thread(send)
    created = answer[0]
    request_id, token = created["service_request_id"], created["token"]

    listed = await asyncio.to_thread(app.list_requests, service_code="BLOCKED_DRAIN", status="open")
    assert [r["service_request_id"] for r in listed] == [request_id]
    one = await asyncio.to_thread(app.get_request, request_id)
    assert one is not None
    assert (one["service_code"], one["status"], one["description"]) == (
        "BLOCKED_DRAIN",
        "open",
        "側溝被落葉堵住",
    )
    assert one["agency_responsible"] == "高雄市政府水利局"
    assert (one["lat"], one["long"]) == (22.6301, 120.3115)
    assert await asyncio.to_thread(app.get_token, token) == [
        {"service_request_id": request_id, "token": token}
    ]
    by_ids = await asyncio.to_thread(app.list_requests, service_request_ids=[request_id])
    assert by_ids == [one]

    with pytest.raises(HttpError) as refused:
        await asyncio.to_thread(app.get_request, "KH-99999999")
    assert refused.value.status == 404


async def test_civicbot_is_refused_without_a_valid_key(
    gateway: GatewayProcess, clean: None, http: httpx.AsyncClient
) -> None:
    app = civicbot(gateway, "l311_revoked-or-never-issued")

    def send() -> Any:
        return app.create_request(
            "POTHOLE", dry_run=False, confirm="SEND", api_key="l311_never", lat=22.6, lng=120.3
        )

    with pytest.raises(HttpError) as refused:
        await asyncio.to_thread(send)
    assert refused.value.status == 403
    assert '"code":403' in refused.value.body
    assert (await http.get(f"{BASE}/requests.json")).status_code == 403


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_georeport_reads_the_services(gateway: GatewayProcess, clean: None, fmt: str) -> None:
    reader = GeoReport(f"{gateway.base_url}{BASE}", "kaohsiung.gov.tw", output_format=fmt)
    services = await asyncio.to_thread(reader.get_service_list)
    pothole = next(s for s in services if s["service_code"] == "POTHOLE")
    expected_metadata: Any = False if fmt == "json" else "false"  # XML is text
    assert (pothole["service_name"], pothole["metadata"], pothole["type"]) == (
        "道路坑洞",
        expected_metadata,
        "realtime",
    )
    assert len(services) == 13
    definition = await asyncio.to_thread(reader.get_service_definition, "POTHOLE")
    assert definition["service_code"] == "POTHOLE"
