"""``lighthouse open311``: the city issues an app its key, the app uses it, the city revokes it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime

import asyncpg
import httpx
import pytest

from tests.conftest import gateway_env
from tests.http.open311.conftest import BASE, FORM
from tests.http.open311.test_spec import SUBMISSION
from tests.support import REPOSITORY, DatabaseUnderTest

pytestmark = pytest.mark.db


def lighthouse(database: DatabaseUnderTest, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "open311", *args],
        cwd=REPOSITORY,
        env={**os.environ, **gateway_env(database)},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_issue_use_list_and_revoke_a_key(
    database: DatabaseUnderTest, http: httpx.AsyncClient, clean: None, owner: asyncpg.Connection
) -> None:
    name = f"1999 citizen app {uuid.uuid4().hex[:6]}"
    issued = await asyncio.to_thread(lighthouse, database, "issue-key", name, "--bureau", "RDEC")
    assert issued.returncode == 0, issued.stderr
    key = issued.stdout.strip().removeprefix("api_key: ")
    assert key.startswith("l311_") and len(key) > 40
    assert "not shown again" in issued.stderr

    created = await http.post(
        f"{BASE}/requests.json", data={**SUBMISSION, "api_key": key}, headers=FORM
    )
    assert created.status_code == 201, created.text

    again = await asyncio.to_thread(lighthouse, database, "issue-key", name, "--bureau", "RDEC")
    assert again.returncode == 2
    assert "exists" in again.stderr
    unknown = await asyncio.to_thread(
        lighthouse, database, "issue-key", "another", "--bureau", "NOWHERE"
    )
    assert unknown.returncode == 2
    assert "unknown bureau 'NOWHERE'" in unknown.stderr

    revoked = await asyncio.to_thread(lighthouse, database, "revoke-key", name)
    assert revoked.returncode == 0, revoked.stderr
    refused = await http.get(f"{BASE}/requests.json", params={"api_key": key})
    assert refused.status_code == 403
    # Answered as an unknown key is (test_access.py); the listing below says it was revoked.
    assert "api_key is not valid" in refused.text
    twice = await asyncio.to_thread(lighthouse, database, "revoke-key", name)
    assert twice.returncode == 2

    listed = await asyncio.to_thread(lighthouse, database, "keys")
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header == "id\tname\tbureau\tmay\tissued_at\tissued_by\trevoked_at"
    line = next(line for line in lines if name in line)
    assert line.split("\t")[2:4] == ["RDEC", "submits and reads"]
    assert datetime.fromisoformat(line.split("\t")[-1])  # when it was revoked
    assert key not in listed.stdout
    as_json = await asyncio.to_thread(lighthouse, database, "keys", "--json")
    assert as_json.returncode == 0, as_json.stderr
    (app,) = [app for app in json.loads(as_json.stdout) if app["name"] == name]
    assert (app["bureau"], app["may"]) == ("RDEC", "submits and reads")
    assert app["revoked_at"] is not None and key not in as_json.stdout

    # Both changes are on the audit record, with the operator who made them.
    operations = await owner.fetch(
        "SELECT operation FROM lighthouse.audit_record WHERE $1 = ANY (resource_ids) ORDER BY seq",
        f"Open311Client:{name}",
    )
    assert [r["operation"] for r in operations] == ["open311 issue-key", "open311 revoke-key"]
