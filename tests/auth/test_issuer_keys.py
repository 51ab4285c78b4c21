"""The keys of trusted issuers (``api.auth.issuers``) are refreshed off the request path: a key
the issuer publishes after start-up is refused until the refresh has run, and accepted after.

The gateway is tested end to end against a real OpenID provider that restarts with a new key
(the provider makes a fresh key on every start, on the same issuer URL); the registry itself is
driven directly against a small JWKS server run in the test, whose keys the test controls.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from api.auth.issuers import IssuerRegistry
from api.auth.keys import KeyRing
from api.auth.tokens import UNKNOWN_KEY, InvalidToken, TokenVerifier
from api.settings import Settings, TrustedIssuer
from tests.conftest import SSO_AUDIENCE, SSO_CLIENTS, gateway_env, trusted_issuers
from tests.oidc_provider import OidcProvider
from tests.support import DatabaseUnderTest, GatewayProcess

AUDIENCE = "https://lighthouse.test/api"
BUREAUS = {"PUBLIC_WORKS": 1}


# --- the gateway, against a real OpenID provider ------------------------------------------------


def refreshes(log: Path) -> int:
    """How many times the gateway has fetched the issuer's keys, by its log."""
    if not log.exists():
        return 0
    return sum('"issuers.keys_refreshed"' in line for line in log.read_text().splitlines())


async def me(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post(
        "/graphql",
        json={"query": "{ me { subject bureauCode } }"},
        headers={"Authorization": f"Bearer {token}"},
    )


async def wait_for(condition: Callable[[], bool], what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.05)


async def test_a_key_the_provider_publishes_after_start_up_is_accepted_once_fetched(
    database: DatabaseUnderTest, tmp_path: Path
) -> None:
    provider = OidcProvider(SSO_AUDIENCE, SSO_CLIENTS, tmp_path / "sso.log")
    provider.start()
    gateway = GatewayProcess({}, tmp_path / "gateway.log")
    try:
        gateway.configure(gateway_env(database, issuer=gateway.base_url))
        gateway.configure({"LIGHTHOUSE_TRUSTED_ISSUERS": trusted_issuers(provider)})
        gateway.start()
        assert refreshes(gateway.log_path) == 1  # at start-up
        client = SSO_CLIENTS[0]
        credentials = (str(client["client_id"]), str(client["client_secret"]), str(client["scope"]))
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
            before = await provider.client_credentials_token(*credentials)
            assert (await me(http, before)).status_code == 200

            # The provider comes back on the same issuer URL with a new signing key.
            provider.stop()
            provider.start()
            after = await provider.client_credentials_token(*credentials)
            assert _kid(after) != _kid(before)

            # The gateway does not fetch on the request path: the first use is refused…
            refused = await me(http, after)
            assert refused.status_code == 401
            assert "unknown key" in refused.headers["www-authenticate"]
            # …and asks for an early refresh, after which the token is accepted.
            await wait_for(lambda: refreshes(gateway.log_path) == 2, "an early refresh")
            accepted = await me(http, after)
            assert accepted.status_code == 200, accepted.text
            assert accepted.json()["data"]["me"] == {
                "subject": f"{provider.issuer}#{client['client_id']}",
                "bureauCode": "PUBLIC_WORKS",
            }
            assert refreshes(gateway.log_path) == 2
    finally:
        gateway.stop()
        provider.stop()


def _kid(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


# --- the registry, against a JWKS server the test controls --------------------------------------


class JwksServer:
    """Serves an OpenID discovery document and a JWKS on 127.0.0.1, and counts key fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.status = 200
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    self._send(200, {"issuer": server.url, "jwks_uri": server.url + "/jwks"})
                elif self.path == "/jwks":
                    server.fetches += 1
                    self._send(server.status, {"keys": list(server.keys)})
                else:
                    self._send(404, {})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def publish(self, *keys: ECKey, use: str = "sig") -> None:
        self.keys += [key.as_dict(private=False) | {"use": use} for key in keys]

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


def new_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256"}, private=True)


def token(issuer: str, key: ECKey, subject: str = "wang.xiaoming") -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + 300,
        "bureau": "PUBLIC_WORKS",
        "roles": ["dispatcher"],
        "scope": "incidents:read",
    }
    return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}, claims, key)


Registry = Callable[..., Awaitable[tuple[IssuerRegistry, TokenVerifier]]]


@pytest.fixture
async def registry(jwks: JwksServer) -> AsyncIterator[Registry]:
    """Starts an issuer registry trusting the JWKS server, with a verifier on it; stops it after.

    (The settings refuse refresh periods under 10 s; the registry itself takes any, and the
    tests use 1 s to stay quick.)"""
    started: list[IssuerRegistry] = []

    async def start(
        refresh_seconds: int = 3600, discover: bool = False
    ) -> tuple[IssuerRegistry, TokenVerifier]:
        config = TrustedIssuer(
            issuer=jwks.url,
            audience=AUDIENCE,
            jwks_uri=None if discover else jwks.url + "/jwks",
            algorithms=["ES256"],
        )
        issuers = IssuerRegistry([config], refresh_seconds)
        started.append(issuers)
        await issuers.start()
        settings = Settings()
        return issuers, TokenVerifier(settings, KeyRing(settings), issuers, BUREAUS)

    yield start
    for issuers in started:
        try:
            await asyncio.wait_for(issuers.stop(), 10)
        except TimeoutError:  # see test_stopping_right_after_an_early_refresh_was_asked_for
            await issuers.stop()


def refused_for_an_unknown_key(verifier: TokenVerifier, value: str) -> bool:
    try:
        verifier.verify(value)
    except InvalidToken as error:
        assert error.reason == UNKNOWN_KEY, error.reason
        return True
    return False


async def test_keys_are_refreshed_in_the_background(jwks: JwksServer, registry: Registry) -> None:
    first = new_key("first")
    jwks.publish(first)
    issuers, verifier = await registry(refresh_seconds=1, discover=True)
    assert verifier.verify(token(jwks.url, first)).subject == f"{jwks.url}#wang.xiaoming"

    later = new_key("later")
    jwks.publish(later)
    # No request asks for it: the scheduled refresh finds the new key by itself.
    await wait_for(lambda: jwks.fetches >= 2, "a scheduled refresh", seconds=10)
    await wait_for(
        lambda: any(k.kid == "later" for k in issuers.issuers[0].keys.keys), "the new key"
    )
    principal = verifier.verify(token(jwks.url, later, subject="lin.zhiqiang"))
    assert (principal.subject, principal.bureau_code) == (
        f"{jwks.url}#lin.zhiqiang",
        "PUBLIC_WORKS",
    )
    assert principal.roles == frozenset({"dispatcher"})


async def test_an_unknown_key_asks_for_one_early_refresh_a_minute(
    jwks: JwksServer, registry: Registry
) -> None:
    jwks.publish(new_key("first"))
    _, verifier = await registry(refresh_seconds=3600)
    assert jwks.fetches == 1

    rotated = new_key("rotated")
    jwks.publish(rotated)
    assert refused_for_an_unknown_key(verifier, token(jwks.url, rotated))
    await wait_for(lambda: jwks.fetches == 2, "an early refresh")
    await wait_for(
        lambda: not refused_for_an_unknown_key(verifier, token(jwks.url, rotated)), "acceptance"
    )

    # A second unknown key within the minute does not make the issuer's server busy again.
    again = new_key("again")
    jwks.publish(again)
    assert refused_for_an_unknown_key(verifier, token(jwks.url, again))
    await asyncio.sleep(0.5)
    assert jwks.fetches == 2
    assert refused_for_an_unknown_key(verifier, token(jwks.url, again))


async def test_an_issuer_down_at_start_up_is_trusted_once_its_keys_arrive(
    jwks: JwksServer, registry: Registry
) -> None:
    key = new_key("only")
    jwks.publish(key)
    jwks.status = 503
    issuers, verifier = await registry(refresh_seconds=1)  # starts anyway
    assert issuers.issuers[0].fetched_at is None
    assert refused_for_an_unknown_key(verifier, token(jwks.url, key))
    await wait_for(lambda: jwks.fetches >= 2, "a retry")  # still failing: keys stay empty
    assert issuers.issuers[0].keys.keys == []
    jwks.status = 200
    await wait_for(lambda: issuers.issuers[0].fetched_at is not None, "the keys")
    assert verifier.verify(token(jwks.url, key)).bureau_code == "PUBLIC_WORKS"


async def test_only_signing_keys_are_trusted(jwks: JwksServer, registry: Registry) -> None:
    signing, encryption = new_key("signing"), new_key("encryption")
    jwks.publish(signing)
    jwks.publish(encryption, use="enc")
    issuers, verifier = await registry()
    assert [k.kid for k in issuers.issuers[0].keys.keys] == ["signing"]
    assert verifier.verify(token(jwks.url, signing)).subject.endswith("#wang.xiaoming")
    assert refused_for_an_unknown_key(verifier, token(jwks.url, encryption))
    # The refusal asked for a refresh; the key is still not taken.
    await wait_for(lambda: jwks.fetches == 2, "an early refresh")
    assert refused_for_an_unknown_key(verifier, token(jwks.url, encryption))


async def test_a_withdrawn_key_is_no_longer_trusted(jwks: JwksServer, registry: Registry) -> None:
    """An issuer withdraws a key (say it leaked): its tokens stop working once the keys are
    refreshed — also a token that was accepted before."""
    withdrawn, replacement = new_key("withdrawn"), new_key("replacement")
    jwks.publish(withdrawn)
    issuers, verifier = await registry()
    earlier = token(jwks.url, withdrawn, subject="seen.before")
    assert verifier.verify(earlier).subject.endswith("#seen.before")
    jwks.keys = []
    jwks.publish(replacement)
    assert refused_for_an_unknown_key(verifier, token(jwks.url, replacement))
    await wait_for(lambda: jwks.fetches == 2, "an early refresh")
    await wait_for(
        lambda: [k.kid for k in issuers.issuers[0].keys.keys] == ["replacement"], "the new keys"
    )
    never_seen = token(jwks.url, withdrawn, subject="never.seen")
    assert refused_for_an_unknown_key(verifier, never_seen)
    # A token verified (and remembered) before the key was withdrawn is refused too.
    with pytest.raises(InvalidToken, match="withdrawn"):
        verifier.verify(earlier)


async def test_stopping_right_after_an_early_refresh_was_asked_for(
    jwks: JwksServer, registry: Registry
) -> None:
    """The gateway stops its issuer registry at shutdown; a refresh asked for by the last
    request must neither run after the stop nor keep the registry (and the process) alive."""
    jwks.publish(new_key("first"))
    issuers, verifier = await registry()
    await asyncio.sleep(0.1)  # serving: the refresh loop waits for its next turn
    assert refused_for_an_unknown_key(verifier, token(jwks.url, new_key("unknown")))
    began = time.monotonic()
    async with asyncio.timeout(3):  # (stop() swallows this cancellation too: time it)
        await issuers.stop()
    assert time.monotonic() - began < 2
    assert jwks.fetches == 1
