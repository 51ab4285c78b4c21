"""The descriptions' examples run against the live gateway: each runnable example (see
tests/http/openapi/support.py) is sent as its caller, and answered with the status it documents,
in a body valid against the description. The metered chat answer needs the model: it runs in
the serving group (tests/metering/test_v1_with_the_model.py)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from api.auth.api_keys import digest, new_key
from api.repositories.open311 import Open311Clients
from tests.http.openapi.support import ANONYMOUS, Credential, checker, operations, run, runnable
from tests.metering.support import MODEL, access_token, licensee_with_licence
from tests.support import DatabaseUnderTest, GatewayProcess
from tests.tokens import TokenFactory
from tests.vision.images import photo

pytestmark = pytest.mark.db

# Operations whose success needs what these tests do not make: a release published with the
# CLI (tests/metering/test_releases.py downloads one); their refusals still run here.
NO_RUNNABLE_SUCCESS = {"getReleaseManifest", "getReleaseFile"}


async def described(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    served = await http.get(f"/openapi/{name}.json")
    assert served.status_code == 200, served.text
    spec: dict[str, Any] = served.json()
    return spec


async def run_all(
    http: httpx.AsyncClient,
    spec: dict[str, Any],
    callers: Mapping[str, Credential],
    substitutions: Mapping[str, Any],
) -> None:
    """Every runnable example of ``spec`` that needs no model, in the order written; and every
    operation has one (and one of success, but for NO_RUNNABLE_SUCCESS)."""
    examples = runnable(spec)
    for path, method, operation in operations(spec):
        own = [e for e in examples if (e.path, e.method) == (path, method)]
        assert own, f"{method.upper()} {path} has no runnable example"
        if operation["operationId"] not in NO_RUNNABLE_SUCCESS:
            assert any(200 <= e.status < 300 for e in own), f"{method.upper()} {path}: no 2xx"
    openapi = checker(spec)
    for example in examples:
        if not example.needs_model:
            await run(http, spec, openapi, example, callers[example.caller], substitutions)


def bearer(token: str) -> Credential:
    return Credential(headers={"Authorization": f"Bearer {token}"})


async def test_the_licensees_api_examples_hold(
    http: httpx.AsyncClient, gateway: GatewayProcess, database: DatabaseUnderTest
) -> None:
    licensed = await licensee_with_licence(database)
    token = await access_token(gateway, licensed)  # client credentials at /oauth/token
    await run_all(
        http,
        await described(http, "v1"),
        {"anonymous": ANONYMOUS, "licensee": bearer(token)},
        {"city-vlm-7b": MODEL, "LIC-2027-0001": licensed.licence.code},
    )


async def test_the_frames_api_examples_hold(
    http: httpx.AsyncClient, tokens: TokenFactory, owner: asyncpg.Connection
) -> None:
    camera = f"OAS-CAM-{uuid.uuid4().hex[:8]}"
    await owner.execute(
        "INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
        " SELECT $1, 'CAMERA', $1, id, 22.6273, 120.3014, 'tests' FROM bureau"
        " WHERE code = 'POLICE'",
        camera,
    )
    gateway_token = tokens.named("camera-gateway")  # a Police service with incidents:write
    seeds = random.Random()
    shown = await http.post(
        "/frames",
        params={"camera": camera, "capturedAt": datetime.now(UTC).isoformat()},
        content=photo(seeds.randrange(10**9)),
        headers={"Authorization": f"Bearer {gateway_token}", "Content-Type": "image/jpeg"},
    )
    assert shown.status_code == 201, shown.text
    officer = tokens.custom(
        subject="police-officer", kind="staff", bureau="POLICE", roles=["viewer"],
        scopes=["incidents:read", "pii:read"],
    )  # fmt: skip
    await run_all(
        http,
        await described(http, "frames"),
        {
            "anonymous": ANONYMOUS,
            "camera-gateway": bearer(gateway_token),
            "police-viewer": bearer(tokens.named("police-viewer")),  # no pii:read
            "police-officer": bearer(officer),
            "auditor": bearer(tokens.named("auditor")),
        },
        {
            "POL-CAM-0042": camera,
            "2027-03-14T09:30:00+08:00": datetime.now(UTC).isoformat(),
            "(the JPEG image's bytes)": photo(seeds.randrange(10**9)),
            "9f2c4e1a7b3d5f6e8a0c2b4d6f8e1a3c5b7d9f0e2a4c6b8d0f1e3a5c7b9d2f4e": shown.json()[
                "frame"
            ]["sha256"],
        },
    )


async def test_the_open311_examples_hold(
    http: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    key = new_key()
    await Open311Clients(owner).issue(
        f"app-oas-{uuid.uuid4().hex[:8]}", digest(key), "RDEC", True, "test"
    )
    made = await http.post(
        "/open311/v2/requests.json",
        params={"api_key": key},
        data={"service_code": "POTHOLE", "lat": "22.62735", "long": "120.30142"},
    )
    assert made.status_code == 201, made.text
    (request,) = made.json()
    await run_all(
        http,
        await described(http, "open311"),
        {
            "anonymous": ANONYMOUS,
            "app": Credential(query={"api_key": key}),
            "unknown-key": Credential(query={"api_key": new_key()}),
        },
        {
            "KH-00000042": request["service_request_id"],
            "3f6c1b8e-5d2a-4c7e-9b10-8a4f2e6d0c15": request["token"],
            "5f0c8a2e-2f4b-4d0e-9a57-1c3e7b6d9f21": str(uuid.uuid4()),
        },
    )
