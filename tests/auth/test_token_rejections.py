"""Every way a bearer token can be wrong is refused with 401 and changes nothing."""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from joserfc.jwk import ECKey, OctKey

from tests.support import GatewayProcess
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

QUERY = {"query": "{ incidents(first: 1) { totalCount } }"}


def _with_header(tokens: TokenFactory, extra: dict[str, Any]) -> str:
    """A valid token, signed with the gateway's key, whose protected header also carries
    ``extra`` — signed by hand: JOSE libraries refuse to produce headers they would refuse."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = tokens.signing_key()
    assert key.algorithm == "ES256"
    header = {"alg": "ES256", "typ": "at+jwt", "kid": key.kid, **extra}
    signing_input = f"{_b64(header)}.{_b64(tokens.valid_claims())}"
    der = key.key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = base64.urlsafe_b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return f"{signing_input}.{signature.decode().rstrip('=')}"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


async def _refused(http: httpx.AsyncClient, token: str, reason: str) -> None:
    response = await http.post("/graphql", json=QUERY, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert reason in response.json()["errors"][0]["message"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_valid_token_is_accepted(http: httpx.AsyncClient, tokens: TokenFactory) -> None:
    token = tokens.signed(tokens.valid_claims())
    response = await http.post("/graphql", json=QUERY, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert "errors" not in response.json()


CASES: dict[str, tuple[Callable[[TokenFactory], str], str]] = {
    "expired": (lambda t: t.signed(t.valid_claims(exp=int(time.time()) - 120, iat=int(time.time()) - 900)), "expired"),
    "not yet valid": (lambda t: t.signed(t.valid_claims(nbf=int(time.time()) + 600)), "not valid yet"),
    "wrong issuer": (lambda t: t.signed(t.valid_claims(iss="https://evil.example")), "issuer is not trusted"),
    "wrong audience": (lambda t: t.signed(t.valid_claims(aud="urn:someone-else")), "audience"),
    "no expiry": (lambda t: t.signed(t.valid_claims(exp=None)), "expiry"),
    "not an access token": (lambda t: t.signed(t.valid_claims(), header={"typ": "JWT"}), "typ must be at+jwt"),
    "unknown kid": (
        lambda t: t.signed(
            t.valid_claims(), header={"kid": "not-ours"},
            key=ECKey.generate_key("P-256", parameters={"kid": "not-ours"}),
        ),
        "unknown key",
    ),
    "critical extensions": (
        lambda t: _with_header(t, {"crit": ["x-city"], "x-city": True}),
        "critical extensions (crit)",
    ),
    "signed by another key with our kid": (
        lambda t: t.signed(t.valid_claims(), key=ECKey.generate_key("P-256")),
        "signature is not valid",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_tokens_are_refused(
    http: httpx.AsyncClient, tokens: TokenFactory, case: str
) -> None:
    make, reason = CASES[case]
    await _refused(http, make(tokens), reason)


async def test_alg_none_is_refused(http: httpx.AsyncClient, tokens: TokenFactory) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{_b64(tokens.valid_claims())}."
    await _refused(http, token, "algorithm is not accepted")


async def test_hs256_signed_with_the_public_key_is_refused(
    http: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    jwks = (await http.get("/oauth/jwks")).json()
    public = jwks["keys"][-1]
    # The classic key-confusion attack: use the published public key as an HMAC secret.
    hmac_key = OctKey.import_key(orjson.dumps(public))
    token = tokens.signed(
        tokens.valid_claims(),
        header={"alg": "HS256", "kid": public["kid"]},
        key=hmac_key,
        algorithms=["HS256"],
    )
    await _refused(http, token, "algorithm is not accepted")


async def test_tampered_payload_is_refused(http: httpx.AsyncClient, tokens: TokenFactory) -> None:
    header, _, signature = tokens.signed(tokens.valid_claims()).split(".")
    forged = _b64(tokens.valid_claims(scope="incidents:read audit:read pii:read", kind="auditor"))
    await _refused(http, f"{header}.{forged}.{signature}", "signature is not valid")


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt", "Token abc"]
)
async def test_malformed_authorization_is_refused(http: httpx.AsyncClient, header: str) -> None:
    response = await http.post("/graphql", json=QUERY, headers={"Authorization": header})
    assert response.status_code == 401


async def test_refusals_are_audited(
    gateway: GatewayProcess, tokens: TokenFactory, owner: Any
) -> None:
    """The first refusal from an address is recorded at once, with its reason (later ones in
    the same minute are counted into one record: tests/http/test_refusals.py)."""
    address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=gateway.base_url, transport=transport) as http:
        await _refused(http, tokens.signed(tokens.valid_claims(aud="urn:x")), "audience")
    record = await owner.fetchrow(
        "SELECT subject, decision, payload FROM audit_record WHERE category = 'refusal'"
        " AND subject = $1",
        f"unauthenticated@{address}",
    )
    assert record is not None and record["decision"] == "DENY"
    assert "audience" in orjson.loads(record["payload"])["details"]["reason"]
