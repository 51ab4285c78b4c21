"""The authorization server, driven by a real OAuth client library (authlib)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
from authlib.deprecate import AuthlibDeprecationWarning

from tests.support import (
    REPOSITORY,
    DatabaseUnderTest,
    GatewayProcess,
    GraphQLClient,
    socket_message,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

pytestmark = pytest.mark.db
T = TypeVar("T")


def cli(
    database: DatabaseUnderTest, gateway: GatewayProcess, *args: str
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "LIGHTHOUSE_DATABASE_URL": database.app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": database.owner_url,
        "LIGHTHOUSE_OAUTH_ISSUER": gateway.base_url,
        "LIGHTHOUSE_ENVIRONMENT": "test",
    }
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


FAILED_PER_MINUTE = 30  # LIGHTHOUSE_FAILED_TOKEN_REQUESTS_PER_MINUTE's default
ISSUED_PER_MINUTE = 60  # LIGHTHOUSE_TOKEN_REQUESTS_PER_MINUTE's default


@pytest.fixture
def register(
    database: DatabaseUnderTest, gateway: GatewayProcess
) -> Callable[..., tuple[str, str]]:
    def make(
        scopes: str, kind: str = "service", bureau: str | None = "PUBLIC_WORKS", roles: str = ""
    ) -> tuple[str, str]:
        client_id = f"test-{uuid.uuid4().hex[:10]}"
        args = [
            "clients",
            "create",
            client_id,
            "--name",
            "test client",
            "--scopes",
            scopes,
            "--kind",
            kind,
            "--roles",
            roles,
        ]
        if bureau:
            args += ["--bureau", bureau]
        result = cli(database, gateway, *args)
        assert result.returncode == 0, result.stderr
        secret = next(
            line.split(": ", 1)[1]
            for line in result.stderr.splitlines()
            if line.startswith("client_secret: ")
        )
        return client_id, secret.strip()

    return make


async def fetch_token(
    gateway: GatewayProcess, client_id: str, secret: str, **params: Any
) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        metadata = (
            await http.get(gateway.base_url + "/.well-known/oauth-authorization-server")
        ).json()
    async with AsyncOAuth2Client(
        client_id, secret, token_endpoint_auth_method="client_secret_basic"
    ) as oauth:
        token: dict[str, Any] = await oauth.fetch_token(
            metadata["token_endpoint"], grant_type="client_credentials", **params
        )
        return token


async def test_metadata_describes_the_server(
    http: httpx.AsyncClient, gateway: GatewayProcess
) -> None:
    metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == gateway.base_url
    for name in ("token_endpoint", "jwks_uri", "introspection_endpoint", "revocation_endpoint"):
        assert metadata[name].startswith(gateway.base_url)
    # Outside production the console's demo sign-in adds the authorization code grant (PKCE).
    assert metadata["grant_types_supported"] == ["client_credentials", "authorization_code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_endpoint"] == f"{gateway.base_url}/oauth/authorize"
    assert "pii:read" in metadata["scopes_supported"]
    jwks = (await http.get("/oauth/jwks")).json()
    assert jwks["keys"] and all("d" not in key for key in jwks["keys"])


async def test_client_credentials_with_authlib(
    gateway: GatewayProcess, http: httpx.AsyncClient, register: Callable[..., tuple[str, str]]
) -> None:
    client_id, secret = register("incidents:read incidents:write assets:read", roles="dispatcher")
    token = await fetch_token(gateway, client_id, secret, scope="incidents:read")
    assert token["token_type"].lower() == "bearer"
    assert token["scope"] == "incidents:read"
    assert 60 <= token["expires_in"] <= 86_400
    me = await GraphQLClient(http, token["access_token"]).data(
        "{ me { subject kind bureauCode roles scopes } }"
    )
    assert me["me"] == {
        "subject": client_id,
        "kind": "service",
        "bureauCode": "PUBLIC_WORKS",
        "roles": ["dispatcher"],
        "scopes": ["incidents:read"],
    }
    header = token["access_token"].split(".")[0]
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    assert decoded["typ"] == "at+jwt"
    kids = {key["kid"] for key in (await http.get("/oauth/jwks")).json()["keys"]}
    assert decoded["kid"] in kids


async def test_scope_beyond_the_grant_is_refused(
    gateway: GatewayProcess, register: Callable[..., tuple[str, str]]
) -> None:
    client_id, secret = register("incidents:read")
    with pytest.raises(OAuthError, match="invalid_scope"):
        await fetch_token(gateway, client_id, secret, scope="incidents:read pii:read")


async def test_wrong_secret_and_unknown_client_are_refused(
    http: httpx.AsyncClient, register: Callable[..., tuple[str, str]]
) -> None:
    client_id, secret = register("incidents:read")
    for auth in ((client_id, secret + "x"), ("no-such-client", secret)):
        response = await http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=auth
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic")
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "resource": "urn:other"}, "invalid_target"),
    ],
)
async def test_bad_token_requests(
    http: httpx.AsyncClient,
    register: Callable[..., tuple[str, str]],
    data: dict[str, str],
    error: str,
) -> None:
    client_id, secret = register("incidents:read")
    response = await http.post("/oauth/token", data=data, auth=(client_id, secret))
    assert response.status_code == 400
    assert response.json()["error"] == error


async def test_token_endpoint_takes_only_form_posts(http: httpx.AsyncClient) -> None:
    response = await http.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_revoked_token_stops_working_at_once(
    gateway: GatewayProcess, http: httpx.AsyncClient, register: Callable[..., tuple[str, str]]
) -> None:
    client_id, secret = register("incidents:read")
    token = (await fetch_token(gateway, client_id, secret))["access_token"]
    client = GraphQLClient(http, token)
    assert (await client.data("{ me { subject } }"))["me"]["subject"] == client_id
    other_id, other_secret = register("incidents:read")
    refused = await http.post("/oauth/revoke", data={"token": token}, auth=(other_id, other_secret))
    assert refused.status_code == 400  # not this client's token
    revoked = await http.post("/oauth/revoke", data={"token": token}, auth=(client_id, secret))
    assert revoked.status_code == 200
    response = await http.post(
        "/graphql",
        json={"query": "{ me { subject } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    assert "revoked" in response.json()["errors"][0]["message"]
    # Revoking an unknown token is not an error (RFC 7009).
    again = await http.post("/oauth/revoke", data={"token": "garbage"}, auth=(client_id, secret))
    assert again.status_code == 200


async def test_introspection(
    gateway: GatewayProcess, http: httpx.AsyncClient, register: Callable[..., tuple[str, str]]
) -> None:
    client_id, secret = register("incidents:read assets:read")
    token = (await fetch_token(gateway, client_id, secret))["access_token"]
    plain_id, plain_secret = register("incidents:read")
    forbidden = await http.post(
        "/oauth/introspect", data={"token": token}, auth=(plain_id, plain_secret)
    )
    assert forbidden.status_code == 403
    resource_id, resource_secret = register("incidents:read", roles="introspector", bureau=None)
    answer = (
        await http.post(
            "/oauth/introspect", data={"token": token}, auth=(resource_id, resource_secret)
        )
    ).json()
    assert answer["active"] is True
    assert answer["client_id"] == client_id
    assert answer["scope"] == "assets:read incidents:read"
    assert answer["iss"] == gateway.base_url
    await http.post("/oauth/revoke", data={"token": token}, auth=(client_id, secret))
    answer = (
        await http.post(
            "/oauth/introspect", data={"token": token}, auth=(resource_id, resource_secret)
        )
    ).json()
    assert answer == {"active": False}
    junk = (
        await http.post(
            "/oauth/introspect", data={"token": "x.y.z"}, auth=(resource_id, resource_secret)
        )
    ).json()
    assert junk == {"active": False}


async def test_disabled_client_gets_no_tokens_and_its_tokens_stop(
    gateway: GatewayProcess,
    http: httpx.AsyncClient,
    database: DatabaseUnderTest,
    register: Callable[..., tuple[str, str]],
) -> None:
    client_id, secret = register("incidents:read")
    token = (await fetch_token(gateway, client_id, secret))["access_token"]

    def listed() -> dict[str, Any]:
        done = cli(database, gateway, "clients", "list", "--json")
        assert done.returncode == 0, done.stderr
        assert secret not in done.stdout  # never a secret
        clients = {c["client_id"]: c for c in json.loads(done.stdout)}
        return clients[client_id]

    before = listed()
    assert (before["scopes"], before["disabled_at"]) == (["incidents:read"], None)
    result = cli(database, gateway, "clients", "disable", client_id)
    assert result.returncode == 0, result.stderr
    assert listed()["disabled_at"] is not None
    table = cli(database, gateway, "clients", "list")
    assert table.stdout.splitlines()[0].split("\t")[:3] == ["client_id", "name", "kind"]
    response = await http.post(
        "/graphql",
        json={"query": "{ me { subject } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    assert "disabled" in response.json()["errors"][0]["message"]
    with pytest.raises(OAuthError, match="invalid_client"):
        await fetch_token(gateway, client_id, secret)


def from_address(gateway: GatewayProcess, address: str) -> httpx.AsyncClient:
    """A client whose requests come from ``address`` (any 127.0.0.0/8 address is this host):
    a stranger, as far as the gateway can tell."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=gateway.base_url, transport=transport, timeout=30)


async def in_one_clock_minute(attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt``, kept only if it began and ended in one clock minute (rate limits count per
    clock minute): one that crossed a minute is made again, from the start of the next. (Waiting
    for a fresh minute before every attempt cost seconds each time; crossing one is rare.)"""
    started = int(time.time() // 60)
    result = await attempt()
    if int(time.time() // 60) == started:
        return result
    await asyncio.sleep(60.5 - time.time() % 60)
    return await attempt()


def kid_of(token: str) -> str:
    """The id of the key that signed ``token`` (its JOSE header's ``kid``)."""
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def stranger_address() -> str:
    """A source address no other test (or earlier run in this minute) used."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


async def test_a_stranger_cannot_lock_a_client_out(
    gateway: GatewayProcess, register: Callable[..., tuple[str, str]]
) -> None:
    async def attempt() -> tuple[str, str, list[int], str | None, int]:
        client_id, secret = register("incidents:read")
        async with from_address(gateway, stranger_address()) as stranger:
            statuses = []
            for _ in range(FAILED_PER_MINUTE + 2):
                response = await stranger.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(client_id, secret + "wrong"),
                )
                statuses.append(response.status_code)
            # The stranger's address is spent, even with the right secret...
            right = await stranger.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
            )
        # Read, not asserted, here (an attempt across a clock minute is made again first).
        return client_id, secret, statuses, response.headers.get("retry-after"), right.status_code

    client_id, secret, statuses, retry_after, right = await in_one_clock_minute(attempt)
    assert statuses[:FAILED_PER_MINUTE] == [401] * FAILED_PER_MINUTE
    assert statuses[FAILED_PER_MINUTE:] == [429, 429]
    assert retry_after is not None and int(retry_after) >= 1
    assert right == 429
    # ...but the client itself, from its own address, is not locked out.
    async with from_address(gateway, stranger_address()) as owner:
        response = await owner.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
    assert response.status_code == 200, response.text


async def test_tokens_issued_to_one_client_are_rate_limited_wherever_it_asks_from(
    gateway: GatewayProcess, register: Callable[..., tuple[str, str]]
) -> None:
    async def attempt() -> tuple[list[int], str | None]:
        client_id, secret = register("incidents:read")

        async def one() -> httpx.Response:
            # Each request from another address: the limit is the client's, not its address's.
            async with from_address(gateway, stranger_address()) as http:
                return await http.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(client_id, secret),
                )

        # All at once: the budget admits exactly its size however the requests interleave (and
        # a burst is over in seconds, so it rarely crosses a clock minute).
        responses = await asyncio.gather(*(one() for _ in range(ISSUED_PER_MINUTE + 1)))
        refused = [r.headers.get("retry-after") for r in responses if r.status_code == 429]
        # Read, not asserted, here: an attempt that crossed a clock minute got a fresh budget
        # and is made again by in_one_clock_minute before anything is judged.
        return sorted(r.status_code for r in responses), refused[0] if refused else None

    statuses, retry_after = await in_one_clock_minute(attempt)
    assert statuses == [200] * ISSUED_PER_MINUTE + [429]
    assert retry_after is not None and int(retry_after) >= 1


async def test_key_rotation_keeps_old_tokens_valid(
    gateway: GatewayProcess,
    http: httpx.AsyncClient,
    database: DatabaseUnderTest,
    register: Callable[..., tuple[str, str]],
) -> None:
    client_id, secret = register("incidents:read")
    old = (await fetch_token(gateway, client_id, secret))["access_token"]
    old_kid = {k["kid"] for k in (await http.get("/oauth/jwks")).json()["keys"]}
    result = cli(database, gateway, "keys", "rotate", "--delay", "0")
    assert result.returncode == 0, result.stderr
    (new_kid,) = re.findall(r"New signing key (\S+) published", result.stderr)
    keys = cli(database, gateway, "keys", "list", "--json")
    assert keys.returncode == 0, keys.stderr
    assert new_kid in {key["kid"] for key in json.loads(keys.stdout)}
    assert "private" not in keys.stdout and "-----" not in keys.stdout
    # The gateway picks the new key up when its key set is asked for (at most every few
    # seconds), or within 30 s: asked until it publishes the key, then it signs with it.
    deadline = time.monotonic() + 35
    while new_kid not in {k["kid"] for k in (await http.get("/oauth/jwks")).json()["keys"]}:
        assert time.monotonic() < deadline, f"{new_kid} not published in 35 s"
        await asyncio.sleep(0.2)
    new = (await fetch_token(gateway, client_id, secret))["access_token"]
    assert kid_of(new) == new_kid and kid_of(old) in old_kid
    for token in (old, new):
        response = await http.post(
            "/graphql",
            json={"query": "{ me { subject } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
    published = {k["kid"] for k in (await http.get("/oauth/jwks")).json()["keys"]}
    assert old_kid < published


async def test_a_revoked_token_ends_its_subscription(
    gateway: GatewayProcess,
    http: httpx.AsyncClient,
    register: Callable[..., tuple[str, str]],
    client: GraphQLClient,
) -> None:
    import json

    import websockets

    from tests.graph.helpers import create_incident

    client_id, secret = register("incidents:read", roles="viewer")
    token = (await fetch_token(gateway, client_id, secret))["access_token"]
    url = gateway.base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await socket.send(json.dumps(init))
        assert (await socket_message(socket))["type"] == "connection_ack"
        query = "subscription { incidentChanged { incident { title } } }"
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        await asyncio.sleep(0.3)
        await create_incident(client, title="第一件")
        first = await socket_message(socket, 10)
        assert first["payload"]["data"]["incidentChanged"]["incident"]["title"] == "第一件"
        revoked = await http.post("/oauth/revoke", data={"token": token}, auth=(client_id, secret))
        assert revoked.status_code == 200
        await create_incident(client, title="第二件")
        ended = await socket_message(socket, 10)
        assert ended["type"] == "next" and ended["payload"]["errors"], ended
        assert "revoked" in ended["payload"]["errors"][0]["message"]
        assert (await socket_message(socket, 10))["type"] == "complete"
