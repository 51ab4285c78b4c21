"""GraphiQL, as the gateway serves it, in Chromium: a subscription run in its editor shows the
events in its result pane (its graphql-ws client reads the gateway's text frames, and takes the
token from the headers editor as the socket's connection_init payload)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser

from api.app import create_app
from api.graph.domains import DOMAINS
from tests.graph.helpers import create_incident
from tests.support import (
    DatabaseUnderTest,
    GraphQLClient,
    InProcessGateway,
    free_port,
    in_process_settings,
)
from tests.tokens import TokenFactory

pytestmark = pytest.mark.asyncio(loop_scope="module")

SUBSCRIPTION = "subscription Live { incidentChanged { kind incident { title } } }"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def graphiql_gateway(database: DatabaseUnderTest) -> AsyncIterator[tuple[str, TokenFactory]]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = in_process_settings(database, issuer, pool_max_size=4)
    assert settings.graphiql_enabled
    async with InProcessGateway(create_app(settings, list(DOMAINS.values())), port) as served:
        yield served.base_url, TokenFactory(database.owner_url, issuer)


async def test_graphiqls_subscription_pane_shows_the_events(
    chromium: Browser, graphiql_gateway: tuple[str, TokenFactory]
) -> None:
    base_url, tokens = graphiql_gateway
    token = tokens.named("pwb-supervisor")
    page = await (await chromium.new_context()).new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    # A returning user: GraphiQL keeps the headers editor's content in local storage.
    headers = json.dumps({"Authorization": f"Bearer {token}"})
    await page.add_init_script(
        f"window.localStorage.setItem('graphiql:headers', {json.dumps(headers)});"
    )
    await page.goto(f"{base_url}/graphql?q={quote(SUBSCRIPTION)}")
    await page.locator(".graphiql-execute-button").click()
    result = page.locator(".result-window")
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        staff = GraphQLClient(http, token)
        # The subscription is not acknowledged: incidents are reported until one's event shows.
        for attempt in range(20):
            title = f"圖形介面訂閱 {attempt}"
            await create_incident(staff, title=title)
            await asyncio.sleep(0.3)
            shown = await result.inner_text()
            if "圖形介面訂閱" in shown:
                break
    assert '"kind": "CREATED"' in shown and "圖形介面訂閱" in shown, (shown, console)
    assert "error" not in shown.lower(), shown
