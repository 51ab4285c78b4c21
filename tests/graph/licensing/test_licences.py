"""Licences in the graph: a licensee reads its own company's with this period's use and what
remains, and nothing of another company's; the city's licensing officers read all and suspend,
resume and revoke; nobody else sees any."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx

from api.domain.licensing import Cost
from api.repositories.licensing import QuotaLedger
from tests.db.test_quota_ledger import licensee_principal, run
from tests.metering.support import access_token, licensee_with_licence
from tests.support import DatabaseUnderTest, GatewayProcess, GraphQLClient
from tests.tokens import TokenFactory

LICENCES = """
{ licences { id code state models purpose quotaPeriod suspensionReason
    quotas { requests inputTokens outputTokens images }
    usage { periodStart used { requests inputTokens } reserved { requests } remaining { requests inputTokens } } } }
"""
SUSPEND = """
mutation($id: ID!, $reason: String!) { suspendLicence(licence: $id, reason: $reason) {
  __typename ... on Licence { state suspensionReason } ... on Error { code message } } }
"""
RESUME = """
mutation($id: ID!) { resumeLicence(licence: $id) {
  __typename ... on Licence { state } ... on Error { code } } }
"""


def officer(tokens: TokenFactory) -> str:
    return tokens.custom(subject="licensing-officer", kind="staff", scopes=["licensing:admin"])


async def test_a_licensee_reads_its_own_licences_and_use_and_no_others(
    gateway: GatewayProcess, database: DatabaseUnderTest, http: httpx.AsyncClient
) -> None:
    mine = await licensee_with_licence(database, quota_requests=100, quota_input_tokens=1000)
    theirs = await licensee_with_licence(database)
    # One request settled, one under way.
    from api.db.pool import create_pool
    from api.settings import DatabaseSettings, Settings

    pool = await create_pool(
        database.app_url, Settings(database=DatabaseSettings(url=database.app_url))
    )
    principal = licensee_principal(mine.licence.licensee_id)
    try:
        for settle in (True, False):
            request = uuid.uuid4()
            await run(pool, principal, lambda uow, r=request: QuotaLedger(uow, "Asia/Taipei").reserve(
                r, mine.licence.id, Cost(100, 10), timedelta(minutes=5)))  # fmt: skip
            if settle:
                await run(pool, principal, lambda uow, r=request: QuotaLedger(uow, "Asia/Taipei").settle(
                    r, Cost(60, 5)))  # fmt: skip
    finally:
        await pool.close()

    seen = await GraphQLClient(http, await access_token(gateway, mine)).data(LICENCES)
    (licence,) = seen["licences"]
    assert licence["code"] == mine.licence.code and licence["state"] == "ACTIVE"
    assert licence["usage"]["used"] == {"requests": 1, "inputTokens": 60}
    assert licence["usage"]["reserved"] == {"requests": 1}
    assert licence["usage"]["remaining"] == {"requests": 98, "inputTokens": 1000 - 60 - 100}
    other = await GraphQLClient(http, await access_token(gateway, theirs)).data(LICENCES)
    assert [lic["code"] for lic in other["licences"]] == [theirs.licence.code]


async def test_the_city_reads_all_and_only_its_officers_change_them(
    gateway: GatewayProcess,
    database: DatabaseUnderTest,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
) -> None:
    licensed = await licensee_with_licence(database)
    city = GraphQLClient(http, officer(tokens))
    codes = [lic["code"] for lic in (await city.data(LICENCES))["licences"]]
    assert licensed.licence.code in codes
    licence_id = next(
        lic["id"]
        for lic in (await city.data(LICENCES))["licences"]
        if lic["code"] == licensed.licence.code
    )
    # Bureau staff see none; a licensee's client cannot change its own licence.
    staff = GraphQLClient(http, tokens.named("pwb-supervisor"))
    assert (await staff.data(LICENCES))["licences"] == []
    licensee = GraphQLClient(http, await access_token(gateway, licensed))
    refused = await licensee.data(SUSPEND, {"id": licence_id, "reason": "x"})
    assert refused["suspendLicence"]["__typename"] == "Forbidden"

    suspended = await city.data(SUSPEND, {"id": licence_id, "reason": "invoice overdue"})
    assert suspended["suspendLicence"] == {
        "__typename": "Licence", "state": "SUSPENDED", "suspensionReason": "invoice overdue",
    }  # fmt: skip
    again = await city.data(SUSPEND, {"id": licence_id, "reason": "again"})
    assert again["suspendLicence"]["__typename"] == "InvalidInput"
    assert (await city.data(RESUME, {"id": licence_id}))["resumeLicence"]["state"] == "ACTIVE"
    for bad_id, typename in (("not-an-id", "InvalidInput"), (_licence_id(2**31 - 1), "NotFound")):
        answer = await city.data(RESUME, {"id": bad_id})
        assert answer["resumeLicence"]["__typename"] == typename


def _licence_id(key: int) -> str:
    from api.graph.core.ids import encode_id

    return encode_id("Licence", key)
