"""The local third-party OIDC provider issues the RFC 9068 access tokens the tests rely on."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.oidc_provider import OidcProvider

pytestmark = pytest.mark.server

AUDIENCE = "https://lighthouse.test/api"
CLIENT_ID = "public-works-dispatch"
CLIENT_SECRET = "public-works-dispatch-secret"
CLIENT: dict[str, Any] = {
    "client_id": CLIENT_ID,
    "client_secret": CLIENT_SECRET,
    "scope": "incidents:read incidents:write",
    "claims": {"bureau": "PUBLIC_WORKS", "roles": ["dispatcher"]},
}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    log_path = tmp_path_factory.mktemp("oidc") / "provider.log"
    oidc = OidcProvider(AUDIENCE, [CLIENT], log_path)
    oidc.start()
    try:
        yield oidc
    finally:
        oidc.stop()


def _segment(token: str, index: int) -> dict[str, Any]:
    """One base64url JSON segment of a compact JWS, decoded without verifying anything."""
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


async def test_client_credentials_token_is_an_rfc9068_jwt(provider: OidcProvider) -> None:
    token = await provider.client_credentials_token(
        CLIENT_ID, CLIENT_SECRET, scope="incidents:read incidents:write"
    )
    assert token.count(".") == 2
    header, payload = _segment(token, 0), _segment(token, 1)

    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    jwks_uri = (await provider.discovery())["jwks_uri"]
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(jwks_uri)
    response.raise_for_status()
    assert header["kid"] in {key["kid"] for key in response.json()["keys"]}

    assert payload["iss"] == provider.issuer
    audience = payload["aud"]
    assert audience == AUDIENCE or (isinstance(audience, list) and AUDIENCE in audience)
    assert "incidents:read" in payload["scope"].split()
    assert payload["client_id"] == CLIENT_ID
    assert payload["sub"] == CLIENT_ID
    assert payload["jti"]
    assert payload["exp"] > payload["iat"]
    assert payload["bureau"] == "PUBLIC_WORKS"
    assert payload["roles"] == ["dispatcher"]


async def test_jwks_publishes_only_public_key_material(provider: OidcProvider) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get((await provider.discovery())["jwks_uri"])
    response.raise_for_status()
    for key in response.json()["keys"]:
        assert key["kty"] == "RSA"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()
