"""Browser pages of other origins: allowed for the exact origins of ``LIGHTHOUSE_CORS_ORIGINS``,
with no credentials; refused for any other origin, and for every origin when none is listed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from api.app import create_app
from api.graph.domains import DOMAINS
from api.settings import HttpSettings
from tests.support import DatabaseUnderTest, InProcessGateway, free_port, in_process_settings
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

BOARD_ORIGIN = "https://board.example.gov.tw"
DEV_SERVER = "http://localhost:5173"
BOARD = "query Board { incidents(first: 1) { edges { node { id } } } }"


def preflight(
    origin: str, method: str = "POST", headers: str = "authorization, content-type"
) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def allowing(database: DatabaseUnderTest) -> AsyncIterator[tuple[str, TokenFactory]]:
    """A gateway that allows the bureau's board and a developer's Vite server."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    http = HttpSettings(cors_origins=(BOARD_ORIGIN, DEV_SERVER))
    settings = in_process_settings(database, issuer, pool_max_size=2, http=http)
    async with InProcessGateway(create_app(settings, list(DOMAINS.values())), port) as gateway:
        yield gateway.base_url, TokenFactory(database.owner_url, issuer)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_listed_origin_is_answered_its_preflight_and_reads_the_graph(
    allowing: tuple[str, TokenFactory],
) -> None:
    base_url, tokens = allowing
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for path in ("/graphql", "/v1/chat/completions", "/open311/v2/requests.json"):
            asked = await http.options(path, headers=preflight(BOARD_ORIGIN))
            assert asked.status_code == 200, (path, asked.text)
            assert asked.headers["access-control-allow-origin"] == BOARD_ORIGIN
            allowed = {m.strip() for m in asked.headers["access-control-allow-methods"].split(",")}
            assert {"GET", "POST"} <= allowed
            assert "authorization" in asked.headers["access-control-allow-headers"].lower()
            assert "access-control-allow-credentials" not in asked.headers
            assert asked.headers["access-control-max-age"] == "600"
        token = tokens.named("pwb-dispatcher")
        answered = await http.post(
            "/graphql",
            json={"query": BOARD},
            headers={"Origin": DEV_SERVER, "Authorization": f"Bearer {token}"},
        )
        assert answered.status_code == 200 and "errors" not in answered.json(), answered.text
        assert answered.headers["access-control-allow-origin"] == DEV_SERVER
        exposed = answered.headers["access-control-expose-headers"].lower()
        assert {"x-request-id", "retry-after", "www-authenticate"} <= set(exposed.split(", "))
        assert "access-control-allow-credentials" not in answered.headers


@pytest.mark.asyncio(loop_scope="module")
async def test_another_origin_gets_no_allowance(allowing: tuple[str, TokenFactory]) -> None:
    base_url, tokens = allowing
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for origin in ("https://evil.example", "https://board.example.gov.tw.evil.example",
                       "http://board.example.gov.tw", "null"):  # fmt: skip
            asked = await http.options("/graphql", headers=preflight(origin))
            assert asked.status_code == 400, (origin, asked.text)
            assert "access-control-allow-origin" not in asked.headers
            token = tokens.named("pwb-dispatcher")
            answered = await http.post(
                "/graphql",
                json={"query": BOARD},
                headers={"Origin": origin, "Authorization": f"Bearer {token}"},
            )
            # Answered (a server cannot stop a request being sent), but without the allowance
            # the browser does not let the page read it.
            assert "access-control-allow-origin" not in answered.headers
        # A listed origin asking for a header the gateway does not read.
        asked = await http.options("/graphql", headers=preflight(BOARD_ORIGIN, headers="x-evil"))
        assert asked.status_code == 400
        asked = await http.options("/graphql", headers=preflight(BOARD_ORIGIN, method="PUT"))
        assert asked.status_code == 400


@pytest.mark.asyncio(loop_scope="module")
async def test_a_subscription_socket_opens_for_a_listed_origin_only(
    allowing: tuple[str, TokenFactory],
) -> None:
    """A WebSocket handshake is not subject to CORS: the gateway checks its Origin itself,
    against the same list (a client that is not a browser sends none)."""
    base_url, _ = allowing
    url = base_url.replace("http://", "ws://") + "/graphql"
    protocols = [Subprotocol("graphql-transport-ws")]
    for origin in (BOARD_ORIGIN, DEV_SERVER, None):
        async with websockets.connect(
            url, subprotocols=protocols, origin=Origin(origin) if origin else None
        ) as socket:
            assert socket.subprotocol == "graphql-transport-ws", origin
    for stranger in ("https://evil.example", "http://board.example.gov.tw"):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url, subprotocols=protocols, origin=Origin(stranger)):
                pass
        assert refused.value.response.status_code == 403, stranger


async def test_with_no_origins_listed_no_page_of_another_origin_is_allowed(
    http: httpx.AsyncClient,
) -> None:
    asked = await http.options("/graphql", headers=preflight("http://localhost:5173"))
    assert asked.status_code == 400
    assert "access-control-allow-origin" not in asked.headers
