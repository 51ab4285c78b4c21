"""Request forgery, introspection in production, and a refused policy set."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.auth.keys import DEVELOPMENT_KEY_ENCRYPTION_KEY
from tests.conftest import gateway_env
from tests.support import DatabaseUnderTest, GatewayProcess, GraphQLClient
from tests.tokens import TokenFactory

INTROSPECT = "{ __schema { queryType { name } } }"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_posts_that_are_not_json_are_refused(
    http: httpx.AsyncClient, tokens: TokenFactory, content_type: str
) -> None:
    response = await http.post(
        "/graphql",
        content=b'{"query": "mutation { __typename }"}',
        headers={
            "content-type": content_type,
            "authorization": f"Bearer {tokens.named('pwb-supervisor')}",
        },
    )
    assert response.status_code == 415
    assert response.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_a_form_posting_multipart_without_the_preflight_header_is_refused(
    http: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    # A browser form can send multipart without asking first; only uploads that carry a header
    # no form can set (so the browser must preflight) are taken.
    response = await http.post(
        "/graphql",
        content=b'--x\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
        b'{"query": "mutation { __typename }"}\r\n--x--\r\n',
        headers={
            "content-type": "multipart/form-data; boundary=x",
            "authorization": f"Bearer {tokens.named('pwb-supervisor')}",
        },
    )
    assert response.status_code == 400
    assert "GraphQL-Require-Preflight" in response.json()["errors"][0]["message"]


@pytest.fixture(scope="module")
def production(
    database: DatabaseUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, TokenFactory]]:
    process = GatewayProcess({}, tmp_path_factory.mktemp("production") / "gateway.log")
    process.configure(gateway_env(database, issuer=process.base_url))
    process.configure(
        {
            "LIGHTHOUSE_ENVIRONMENT": "production",
            # The same key-encryption key as the test gateway, which created the signing keys.
            "LIGHTHOUSE_KEY_ENCRYPTION_KEY": base64.b64encode(
                DEVELOPMENT_KEY_ENCRYPTION_KEY
            ).decode(),
        }
    )
    process.start()
    yield process, TokenFactory(database.owner_url, process.base_url)
    process.stop()


async def test_introspection_in_production_is_for_developers_and_auditors(
    production: tuple[GatewayProcess, TokenFactory],
) -> None:
    gateway, tokens = production
    async with httpx.AsyncClient(base_url=gateway.base_url) as http:
        staff = await GraphQLClient(http, tokens.named("pwb-supervisor")).execute(INTROSPECT)
        assert "introspection" in staff["errors"][0]["message"].lower()
        for token in (
            tokens.named("auditor"),
            tokens.custom(
                subject="dev", kind="staff", bureau="RDEC", roles=["developer"], scopes=[]
            ),
        ):
            body = await GraphQLClient(http, token).execute(INTROSPECT)
            assert body["data"]["__schema"]["queryType"]["name"] == "Query"
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 404  # no GraphiQL in production


def test_an_invalid_policy_set_stops_start_up(database: DatabaseUnderTest, tmp_path: Path) -> None:
    broken = tmp_path / "policies"
    shutil.copytree(Path(__file__).resolve().parents[2] / "policies", broken)
    (broken / "broken.cedar").write_text(
        '@id("b")\n@description("b")\npermit (principal, action == Lighthouse::Action::"Nope", resource);'
    )
    process = GatewayProcess({}, tmp_path / "gateway.log")
    process.configure(
        gateway_env(database, issuer=process.base_url) | {"LIGHTHOUSE_POLICIES_DIR": str(broken)}
    )
    with pytest.raises(RuntimeError, match="fail validation"):
        process.start(timeout=30)


async def test_the_subgraph_schema_in_production_is_for_the_router(
    production: tuple[GatewayProcess, TokenFactory],
) -> None:
    gateway, tokens = production
    service = "{ _service { sdl } }"
    async with httpx.AsyncClient(base_url=gateway.base_url) as http:
        for client in (
            GraphQLClient(http),  # anonymous
            GraphQLClient(http, tokens.named("pwb-supervisor")),
            GraphQLClient(http, tokens.named("camera-gateway")),  # a service, but not the router
        ):
            body = await client.execute(service)
            assert body.get("data") is None, body
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        router = tokens.custom(subject="router", kind="service", roles=["router"], scopes=[])
        body = await GraphQLClient(http, router).execute(service)
        assert "type Incident" in body["data"]["_service"]["sdl"]


async def test_validation_errors_in_production_suggest_no_names(
    production: tuple[GatewayProcess, TokenFactory], gateway: GatewayProcess
) -> None:
    typo = "{ incidentz(first: 1) { edges { node { id } } } }"
    production_gateway, _ = production
    async with httpx.AsyncClient(base_url=production_gateway.base_url) as http:
        message = (await GraphQLClient(http).execute(typo))["errors"][0]["message"]
    assert "incidentz" in message and "Did you mean" not in message and "incidents" not in message
    # Outside production, suggestions help developers.
    async with httpx.AsyncClient(base_url=gateway.base_url) as http:
        message = (await GraphQLClient(http).execute(typo))["errors"][0]["message"]
    assert "Did you mean" in message
