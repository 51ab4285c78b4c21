"""The licensing officers' work through the graph: a licensee registered, a licence issued, a
client given, re-keyed and disabled, each step taking effect on the licensee's calls at once;
and every bad input or caller refused with a typed error."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest
from authlib.integrations.base_client.errors import OAuthError

from tests.metering.support import MODEL, Licensed, access_token, sdk
from tests.support import GatewayProcess, GraphQLClient
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

CREATE = """
mutation($code: String!, $taxId: String!) {
  createLicensee(code: $code, company: "ParkWise Ltd.", taxId: $taxId,
                 contacts: [{name: "Lin Mei", email: "mei.lin@parkwise.example"}]) {
    __typename ... on Licensee { id code status contacts { name } } ... on Error { code message }
  } }
"""
ISSUE = """
mutation($licence: LicenceInput!) { issueLicence(licence: $licence) {
  __typename ... on Licence { code state models } ... on Error { code message } } }
"""
REGISTER = """
mutation($licensee: ID!, $clientId: String!, $scopes: [String!]!) {
  registerLicenseeClient(licensee: $licensee, clientId: $clientId, name: "app", scopes: $scopes) {
    __typename ... on ClientCredentials { clientId clientSecret } ... on Error { code message } } }
"""
ROTATE = """
mutation($clientId: String!, $hours: Float!) {
  rotateLicenseeClientSecret(clientId: $clientId, overlapHours: $hours) {
    __typename ... on ClientCredentials { clientSecret } ... on Error { code } } }
"""
DISABLE = """
mutation($clientId: String!) { disableLicenseeClient(clientId: $clientId) {
  __typename ... on DisabledClient { clientId } ... on Error { code } } }
"""


def officer(tokens: TokenFactory) -> str:
    return tokens.custom(subject="licensing-officer", kind="staff", scopes=["licensing:admin"])


def licence_input(licensee: str, code: str) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "licensee": licensee, "code": code, "models": [MODEL], "purpose": "parking-occupancy",
        "purposeDescription": "parking occupancy analytics",
        "validFrom": (now - timedelta(days=1)).isoformat(),
        "validUntil": (now + timedelta(days=365)).isoformat(),
        "quotas": {"requests": 1000, "inputTokens": 10**6, "outputTokens": 10**6, "images": 100},
        "requestsPerMinute": 60, "tokensPerMinute": 100_000, "maxConcurrent": 4, "maxTokens": 64,
    }  # fmt: skip


async def test_an_officer_licenses_a_company_through_the_graph(
    gateway: GatewayProcess, http: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    tag = uuid.uuid4().hex[:8]
    city = GraphQLClient(http, officer(tokens))
    created = (
        await city.data(CREATE, {"code": f"gq-{tag}", "taxId": f"{int(tag, 16) % 10**8:08d}"})
    )["createLicensee"]
    assert created["__typename"] == "Licensee" and created["status"] == "ACTIVE"
    issued = await city.data(
        ISSUE, {"licence": licence_input(created["id"], f"LIC-GQ-{tag.upper()}")}
    )
    assert issued["issueLicence"]["state"] == "ACTIVE"
    client_id = f"gq-{tag}-app"
    given = (await city.data(
        REGISTER, {"licensee": created["id"], "clientId": client_id, "scopes": ["inference:invoke"]}
    ))["registerLicenseeClient"]  # fmt: skip
    assert given["__typename"] == "ClientCredentials" and len(given["clientSecret"]) >= 32
    first = Licensed(None, client_id, given["clientSecret"])  # type: ignore[arg-type]
    client = sdk(gateway, await access_token(gateway, first, scope="inference:invoke"))
    assert [m.id for m in (await client.models.list()).data] == [MODEL]

    rotated = (await city.data(ROTATE, {"clientId": client_id, "hours": 1}))[
        "rotateLicenseeClientSecret"
    ]
    second = Licensed(None, client_id, rotated["clientSecret"])  # type: ignore[arg-type]
    assert await access_token(gateway, first, scope="inference:invoke")  # within the overlap
    await city.data(ROTATE, {"clientId": client_id, "hours": 0})
    for stale in (first, second):
        with pytest.raises(OAuthError):
            await access_token(gateway, stale, scope="inference:invoke")

    assert (await city.data(DISABLE, {"clientId": client_id}))["disableLicenseeClient"] == {
        "__typename": "DisabledClient", "clientId": client_id,
    }  # fmt: skip
    with pytest.raises(openai.AuthenticationError):  # its tokens stopped at once
        await client.models.list()


async def test_bad_input_and_other_callers_are_refused_with_typed_errors(
    gateway: GatewayProcess, http: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    tag = uuid.uuid4().hex[:8]
    city = GraphQLClient(http, officer(tokens))
    bad_tax = (await city.data(CREATE, {"code": f"bad-{tag}", "taxId": "123"}))["createLicensee"]
    assert bad_tax["__typename"] == "InvalidInput"
    created = (
        await city.data(CREATE, {"code": f"ok-{tag}", "taxId": f"{int(tag, 16) % 10**8:08d}"})
    )["createLicensee"]
    again = (await city.data(CREATE, {"code": f"ok-{tag}", "taxId": "87654321"}))["createLicensee"]
    assert again["__typename"] == "InvalidInput"
    backwards = licence_input(created["id"], f"LIC-BAD-{tag.upper()}")
    backwards["validUntil"] = "2020-01-01T00:00:00+08:00"
    assert (await city.data(ISSUE, {"licence": backwards}))["issueLicence"][
        "__typename"
    ] == "InvalidInput"
    for scopes in (["incidents:read"], ["inference:invoke", "pii:read"], []):
        refused = (await city.data(
            REGISTER, {"licensee": created["id"], "clientId": f"x-{tag}", "scopes": scopes}
        ))["registerLicenseeClient"]  # fmt: skip
        assert refused["__typename"] == "InvalidInput", scopes
    from api.graph.core.ids import encode_id

    missing = (await city.data(
        REGISTER, {"licensee": encode_id("Licensee", 2**31 - 1), "clientId": f"y-{tag}",
                   "scopes": ["usage:read"]}
    ))["registerLicenseeClient"]  # fmt: skip
    assert missing["__typename"] == "NotFound"
    # Only licensees' clients: a bureau's service client is not the licensing office's to touch.
    assert (await city.data(DISABLE, {"clientId": "lighthouse-tests"}))["disableLicenseeClient"][
        "__typename"
    ] == "NotFound"
    for caller in (tokens.named("pwb-supervisor"), tokens.named("auditor")):
        answer = await GraphQLClient(http, caller).data(
            CREATE, {"code": f"z-{tag}", "taxId": "11223344"}
        )
        assert answer["createLicensee"]["__typename"] == "Forbidden"
