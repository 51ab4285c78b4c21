"""``lighthouse licensing`` and ``lighthouse clients create --licensee``, run as an officer runs
them: a licensee registered, a licence issued, a client given, the client's calls following the
licence's state, and every change in the audit trail."""

from __future__ import annotations

import json
import uuid

import asyncpg
import httpx
import openai
import pytest

from tests.auth.test_oauth_server import cli
from tests.metering.support import MODEL, Licensed, access_token, sdk
from tests.support import DatabaseUnderTest, GatewayProcess


def secret_of(stderr: str) -> str:
    return next(
        line.split(": ", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("client_secret: ")
    )


@pytest.mark.db
async def test_an_officer_licenses_a_company_from_the_command_line(
    database: DatabaseUnderTest, gateway: GatewayProcess
) -> None:
    tag = uuid.uuid4().hex[:8]
    code, licence_code, client_id = f"co-{tag}", f"LIC-{tag.upper()}", f"co-{tag}-app"
    tax_id = f"{int(tag, 16) % 10**8:08d}"

    def run(*args: str) -> str:
        result = cli(database, gateway, *args)
        assert result.returncode == 0, result.stderr
        return result.stderr + result.stdout

    run(
        "licensing", "add-licensee", code, "--company", "ParkWise Ltd.", "--tax-id", tax_id,
        "--contact", "Lin Mei <mei.lin@parkwise.example> 07-1234567",
    )  # fmt: skip
    run(
        "licensing", "add-licence", licence_code, "--licensee", code, "--model", MODEL,
        "--purpose", "parking-occupancy", "--description", "parking occupancy analytics",
        "--from", "2026-01-01T00:00+08:00", "--until", "2099-01-01T00:00+08:00",
    )  # fmt: skip
    created = run(
        "clients", "create", client_id, "--kind", "licensee", "--licensee", code,
        "--name", "ParkWise app", "--scopes", "inference:invoke usage:read",
    )  # fmt: skip
    licensed = Licensed(licence=None, client_id=client_id, secret=secret_of(created))  # type: ignore[arg-type]
    client = sdk(gateway, await access_token(gateway, licensed))
    assert [m.id for m in (await client.models.list()).data] == [MODEL]

    run("licensing", "suspend", licence_code, "--reason", "invoice overdue")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.code == "suspended"
    assert [m.id for m in (await client.models.list()).data] == []
    run("licensing", "resume", licence_code)
    listed = run("licensing", "list")
    assert licence_code in listed and "parking-occupancy" in listed
    as_json = cli(database, gateway, "licensing", "list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    (entry,) = [e for e in json.loads(as_json.stdout) if e["code"] == licence_code]
    assert (entry["purpose"], entry["state"]) == ("parking-occupancy", "ok")

    owner = await asyncpg.connect(database.owner_url)
    try:
        operations = await owner.fetch(
            "SELECT operation, subject FROM lighthouse.audit_record"
            " WHERE operation LIKE 'licensing %' AND subject LIKE 'cli:%' ORDER BY seq"
        )
    finally:
        await owner.close()
    assert [r["operation"] for r in operations][-6:] == [
        "licensing add-licensee",
        "licensing add-licence",
        "licensing suspend",
        "licensing resume",
        "licensing list",
        "licensing list",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["licensing", "add-licensee", "Bad Code", "--company", "X", "--tax-id", "12345678",
          "--contact", "A <a@b.example>"], "licensee"),
        (["licensing", "add-licensee", "fine-code", "--company", "X", "--tax-id", "123",
          "--contact", "A <a@b.example>"], "licensee"),
        (["licensing", "add-licensee", "fine-code", "--company", "X", "--tax-id", "12345678",
          "--contact", "nobody"], "Name <email>"),
        (["licensing", "add-licence", "LIC-X", "--licensee", "no-such-company", "--model", MODEL,
          "--purpose", "p1", "--description", "d", "--from", "2026-01-01T00:00+08:00",
          "--until", "2027-01-01T00:00+08:00"], "no licensee"),
        (["licensing", "add-licence", "LIC-X", "--licensee", "x", "--model", MODEL,
          "--purpose", "p1", "--description", "d", "--from", "2026-01-01T00:00",
          "--until", "2027-01-01T00:00+08:00"], "offset"),
        (["licensing", "suspend", "LIC-NOPE", "--reason", "r"], "no licence"),
        (["clients", "create", "lonely-app", "--kind", "licensee", "--name", "x",
          "--scopes", "inference:invoke"], "names its licensee"),
        (["clients", "create", "ghost-app", "--kind", "licensee", "--licensee", "ghost",
          "--name", "x", "--scopes", "inference:invoke"], "unknown licensee"),
        (["licensing", "publish-release", MODEL, "v1", "--dir", "/nonexistent/model",
          "--config", "serving/configs/gpu.yaml", "--terms", "t"], "is not a directory"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_a_message_and_changes_nothing(
    database: DatabaseUnderTest, gateway: GatewayProcess, args: list[str], message: str
) -> None:
    result = cli(database, gateway, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


async def test_a_licensee_client_cannot_call_without_inference_invoke(
    database: DatabaseUnderTest, gateway: GatewayProcess
) -> None:
    from tests.metering.support import licensee_with_licence

    licensed = await licensee_with_licence(database)
    token = await access_token(gateway, licensed, scope="usage:read")
    async with httpx.AsyncClient(base_url=gateway.base_url) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


@pytest.mark.db
async def test_a_rotated_secret_works_through_its_overlap_and_not_after(
    database: DatabaseUnderTest, gateway: GatewayProcess
) -> None:
    from authlib.integrations.base_client.errors import OAuthError

    from tests.metering.support import licensee_with_licence

    first = await licensee_with_licence(database)

    def rotate(hours: str) -> Licensed:
        result = cli(
            database, gateway, "clients", "rotate-secret", first.client_id, "--overlap-hours", hours
        )
        assert result.returncode == 0, result.stderr
        return Licensed(first.licence, first.client_id, secret_of(result.stderr))

    second = rotate("1")
    assert await access_token(gateway, first)  # within the overlap
    assert await access_token(gateway, second)
    third = rotate("0")  # the second secret stops at once; the first is long gone
    assert await access_token(gateway, third)
    for stale in (first, second):
        with pytest.raises(OAuthError):
            await access_token(gateway, stale)
    missing = cli(database, gateway, "clients", "rotate-secret", "no-such-client")
    assert missing.returncode == 2 and "No enabled client" in missing.stderr


async def test_a_statement_lists_every_request_and_agrees_with_the_ledger_to_the_unit(
    database: DatabaseUnderTest, gateway: GatewayProcess
) -> None:
    import csv
    import io
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from api.db.pool import create_pool
    from api.db.unit_of_work import UnitOfWork
    from api.domain.licensing import Cost
    from api.repositories.licensing import QuotaLedger, UsageRecord, UsageRecords
    from api.settings import DatabaseSettings, Settings
    from tests.db.test_quota_ledger import licensee_principal
    from tests.metering.support import licensee_with_licence

    licensed = await licensee_with_licence(database)
    licence = licensed.licence
    principal = licensee_principal(licence.licensee_id)
    settings = Settings(database=DatabaseSettings(url=database.app_url))
    pool = await create_pool(database.app_url, settings)
    uses = [Cost(120, 30, 1), Cost(80, 12, 0), None, Cost(5, 1, 0)]  # None: a failed call
    try:
        for used in uses:
            request = uuid.uuid4()
            async with UnitOfWork(pool, principal.database_settings()) as uow:
                ledger = QuotaLedger(uow, "Asia/Taipei")
                assert (
                    await ledger.reserve(
                        request, licence.id, Cost(200, 64, 1), timedelta(minutes=5)
                    )
                    is None
                )
            async with UnitOfWork(pool, principal.database_settings()) as uow:
                ledger = QuotaLedger(uow, "Asia/Taipei")
                period = await (
                    ledger.release(request) if used is None else ledger.settle(request, used)
                )
                assert period is not None
                await UsageRecords(uow).add(
                    UsageRecord(
                        request, licence.id, licence.licensee_id, period, licensed.client_id,
                        MODEL, "parking-occupancy", "OK" if used else "FAILED",
                        *(((used.input_tokens, used.output_tokens, used.images)) if used else (0, 0, 0)),
                        False, 40, datetime.now(UTC),
                    )
                )  # fmt: skip
    finally:
        await pool.close()

    month = datetime.now(ZoneInfo("Asia/Taipei")).strftime("%Y-%m")
    result = cli(database, gateway, "licensing", "statement", licence.code, "--period", month)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][:2] == ["request_id", "finished_at"] and len(rows) == 1 + 4 + 1
    assert rows[-1][0] == "TOTAL" and rows[-1][5] == "3 charged"
    assert [int(v) for v in rows[-1][7:10]] == [205, 43, 1]
    assert "agree with the quota ledger" in result.stderr

    # A record the ledger never charged: the statement refuses to go out.
    owner = await asyncpg.connect(database.owner_url)
    try:
        await owner.execute(
            "INSERT INTO lighthouse.usage_record (request_id, licence_id, licensee_id, period_start,"
            " client_id, model, purpose, status, input_tokens, output_tokens, images, streamed,"
            " latency_ms, started_at) SELECT $1, licence_id, $2, period_start, 'x', $3, 'p', 'OK',"
            " 1, 0, 0, false, 1, now() FROM lighthouse.quota_period WHERE licence_id = $4",
            uuid.uuid4(), licence.licensee_id, MODEL, licence.id,
        )  # fmt: skip
    finally:
        await owner.close()
    tampered = cli(database, gateway, "licensing", "statement", licence.code, "--period", month)
    assert tampered.returncode == 1 and "differ" in tampered.stderr
    wrong = cli(database, gateway, "licensing", "statement", licence.code, "--period", "2026-11-30")
    assert wrong.returncode == 2 and "write YYYY-MM" in wrong.stderr


@pytest.mark.db
async def test_usage_is_rolled_up_by_day_and_old_records_go_once_rolled_up(
    database: DatabaseUnderTest, gateway: GatewayProcess
) -> None:
    from tests.metering.support import licensee_with_licence

    licensed = await licensee_with_licence(database)
    licence = licensed.licence
    owner = await asyncpg.connect(database.owner_url)
    try:
        # Three days ago (two requests, one failed), a day ago (one), today (one).
        for days, status, tokens in ((3, "OK", 10), (3, "FAILED", 0), (1, "OK", 7), (0, "OK", 5)):
            await owner.execute(
                "INSERT INTO lighthouse.usage_record (request_id, licence_id, licensee_id,"
                " period_start, client_id, model, purpose, status, input_tokens, output_tokens,"
                " images, streamed, latency_ms, started_at, finished_at) VALUES ($1, $2, $3,"
                " now(), 'c', $4, 'p', $5, $6, $6, 0, false, 5, now(), now() - make_interval(days => $7))",
                uuid.uuid4(), licence.id, licence.licensee_id, MODEL, status, tokens, days,
            )  # fmt: skip
        before = await owner.fetchval("SELECT count(*) FROM lighthouse.usage_daily")
        result = cli(database, gateway, "licensing", "rollup", "--keep-days", "2")
        assert result.returncode == 0, result.stderr
        daily = await owner.fetch(
            "SELECT day, status, requests, input_tokens FROM lighthouse.usage_daily"
            " WHERE licence_id = $1 ORDER BY day, status",
            licence.id,
        )
        left = await owner.fetchval(
            "SELECT count(*) FROM lighthouse.usage_record WHERE licence_id = $1", licence.id
        )
        again = cli(database, gateway, "licensing", "rollup", "--keep-days", "2")
        after = await owner.fetchval("SELECT count(*) FROM lighthouse.usage_daily")
    finally:
        await owner.close()
    # The days that are over, per status; today's record is not rolled up yet.
    assert [(r["status"], r["requests"], r["input_tokens"]) for r in daily] == [
        ("FAILED", 1, 0), ("OK", 1, 10), ("OK", 1, 7),
    ]  # fmt: skip
    assert left == 2  # the record from three days ago went; yesterday's and today's stay
    assert again.returncode == 0 and "0 daily totals written; 0 usage records" in again.stderr
    assert after - before == 3
