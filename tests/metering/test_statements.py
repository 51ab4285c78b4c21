"""A licence's statement over HTTP (``GET /v1/usage/statement``): the licensee gets the same CSV
the officers' CLI writes, with totals that match its usage records to the unit; another company's
licence, a bad period and a missing token are refused in OpenAI's error shape, and each statement
handed out or refused is on the audit record."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from api.db.pool import create_pool
from api.db.unit_of_work import UnitOfWork
from api.domain.licensing import Cost
from api.repositories.licensing import QuotaLedger, UsageRecord, UsageRecords
from api.settings import DatabaseSettings, Settings
from tests.auth.test_oauth_server import cli
from tests.db.test_quota_ledger import licensee_principal
from tests.metering.support import MODEL, PURPOSE, Licensed, access_token, licensee_with_licence
from tests.support import DatabaseUnderTest, GatewayProcess
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

ZONE = "Asia/Taipei"
PATH = "/v1/usage/statement"


async def metered(database: DatabaseUnderTest, licensed: Licensed, uses: list[Cost | None]) -> None:
    """Requests charged as the metered path charges them: reserved, then settled (or released:
    ``None``, a failed call) with the usage record in the same transaction."""
    licence = licensed.licence
    principal = licensee_principal(licence.licensee_id)
    pool = await create_pool(
        database.app_url, Settings(database=DatabaseSettings(url=database.app_url))
    )
    try:
        for used in uses:
            request = uuid.uuid4()
            async with UnitOfWork(pool, principal.database_settings()) as uow:
                refused = await QuotaLedger(uow, ZONE).reserve(
                    request, licence.id, Cost(200, 64, 1), timedelta(minutes=5)
                )
                assert refused is None
            async with UnitOfWork(pool, principal.database_settings()) as uow:
                ledger = QuotaLedger(uow, ZONE)
                period = await (
                    ledger.release(request) if used is None else ledger.settle(request, used)
                )
                assert period is not None
                charged = (
                    (used.input_tokens, used.output_tokens, used.images) if used else (0, 0, 0)
                )
                await UsageRecords(uow).add(
                    UsageRecord(
                        request, licence.id, licence.licensee_id, period, licensed.client_id,
                        MODEL, PURPOSE, "OK" if used else "FAILED", *charged, False, 40,
                        datetime.now(UTC),
                    )
                )  # fmt: skip
    finally:
        await pool.close()


async def get(gateway: GatewayProcess, token: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
        return await http.get(PATH, params=params, headers=headers)


async def test_a_licensee_gets_its_statement_as_the_cli_writes_it(
    database: DatabaseUnderTest, gateway: GatewayProcess
) -> None:
    licensed = await licensee_with_licence(database)
    code = licensed.licence.code
    await metered(database, licensed, [Cost(120, 30, 1), Cost(80, 12, 0), None, Cost(5, 1, 0)])
    month = datetime.now(ZoneInfo(ZONE)).strftime("%Y-%m")

    response = await get(gateway, await access_token(gateway, licensed), licence=code, period=month)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert f'filename="{code}-{month}.csv"' in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][:2] == ["request_id", "finished_at"] and len(rows) == 1 + 4 + 1
    assert rows[-1][0] == "TOTAL" and rows[-1][5] == "3 charged"

    # The totals are the records', to the unit.
    owner = await asyncpg.connect(database.owner_url)
    try:
        records = await owner.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'OK') AS ok, sum(input_tokens) AS input,"
            " sum(output_tokens) AS output, sum(images) AS images"
            " FROM lighthouse.usage_record WHERE licence_id = $1",
            licensed.licence.id,
        )
    finally:
        await owner.close()
    assert records is not None
    assert (
        [int(v) for v in rows[-1][7:10]]
        == [205, 43, 1]
        == [records["input"], records["output"], records["images"]]
    )
    assert records["ok"] == 3

    # The officers' copy is the same document.
    officer = cli(database, gateway, "licensing", "statement", code, "--period", month)
    assert officer.returncode == 0, officer.stderr
    assert officer.stdout == response.text


async def test_statements_are_refused_in_openais_shape_and_audited(
    database: DatabaseUnderTest, gateway: GatewayProcess, tokens: TokenFactory
) -> None:
    mine = await licensee_with_licence(database)
    theirs = await licensee_with_licence(database)
    await metered(database, mine, [Cost(10, 2, 0)])
    month = datetime.now(ZoneInfo(ZONE)).strftime("%Y-%m")
    token = await access_token(gateway, mine)

    async def refused(status: int, **params: str) -> dict[str, object]:
        response = await get(gateway, token, **params)
        assert response.status_code == status, response.text
        error: dict[str, object] = response.json()["error"]
        return error

    # Another company's licence is as good as missing; so is one that does not exist.
    other = await refused(404, licence=theirs.licence.code, period=month)
    assert other["code"] == "not_found" and theirs.licence.code in str(other["message"])
    assert (await refused(404, licence="LIC-NO-SUCH-ONE", period=month))["code"] == "not_found"
    for period in ("2027-13", "2027-03-01", "March", "2027-03'--"):
        bad = await refused(400, licence=mine.licence.code, period=period)
        assert bad["param"] == "period" and "write YYYY-MM" in str(bad["message"])
    assert (await refused(400, licence=mine.licence.code))["param"] == "period"
    assert (await refused(400, period=month))["param"] == "licence"
    assert (await refused(400, licence="x" * 200, period=month))["param"] == "licence"
    unauthenticated = await get(gateway, None, licence=mine.licence.code, period=month)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "invalid_api_key"

    # The city's usage readers get any licence's; bureau staff none.
    auditor = tokens.custom(subject="usage-auditor", kind="auditor", scopes=["usage:read"])
    assert (
        await get(gateway, auditor, licence=theirs.licence.code, period=month)
    ).status_code == 200
    staff = await get(
        gateway, tokens.named("pwb-supervisor"), licence=mine.licence.code, period=month
    )
    assert staff.status_code == 404

    # A record the ledger never charged: the statement does not go out.
    owner = await asyncpg.connect(database.owner_url)
    try:
        await owner.execute(
            "INSERT INTO lighthouse.usage_record (request_id, licence_id, licensee_id, period_start,"
            " client_id, model, purpose, status, input_tokens, output_tokens, images, streamed,"
            " latency_ms, started_at) SELECT $1, licence_id, $2, period_start, 'x', $3, 'p', 'OK',"
            " 1, 0, 0, false, 1, now() FROM lighthouse.quota_period WHERE licence_id = $4",
            uuid.uuid4(), mine.licence.licensee_id, MODEL, mine.licence.id,
        )  # fmt: skip
        disagrees = await get(gateway, token, licence=mine.licence.code, period=month)
        assert disagrees.status_code == 500
        assert disagrees.json()["error"]["code"] == "statement_disagrees"

        audited = await owner.fetch(
            "SELECT decision, payload::jsonb->'details'->>'outcome' AS outcome, resource_ids"
            " FROM lighthouse.audit_record WHERE operation = $1 AND client_id = $2 ORDER BY seq",
            f"GET {PATH}", mine.client_id,
        )  # fmt: skip
    finally:
        await owner.close()
    outcomes = [row["outcome"] for row in audited]
    assert outcomes.count("NOT_FOUND") == 2 and outcomes.count("INVALID_INPUT") == 7
    assert outcomes[-1] == "STATEMENT_DISAGREES"
    assert f"Licence:{theirs.licence.code}" in audited[0]["resource_ids"]  # what was aimed at
