"""The graph from a browser page of another origin, through the clients the bureaus' frontend
teams use, configured as the README says: urql, Apollo Client and Relay each read the board by
the id their own tooling registered (queries by GET), and graphql-ws receives a subscription's
events over the browser's own WebSocket."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser

from api.app import create_app
from api.graph.core.trusted import manifest_documents
from api.graph.domains import DOMAINS
from api.settings import HttpSettings
from tests.browser.conftest import open_app, serving_site
from tests.browser.frontends import REPOSITORY, TOOLCHAINS, BuiltApp, build
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


@dataclass(frozen=True)
class Board:
    base_url: str
    tokens: TokenFactory
    apps: dict[str, BuiltApp]
    site: str  # the origin the gateway allows
    unlisted: str  # one it does not

    async def expected(self, app: str, token: str) -> dict[str, Any]:
        """What the board is, asked with the text of ``app``'s registered document."""
        manifest = self.apps[app].manifest
        assert manifest is not None
        (text,) = manifest_documents(json.loads(manifest.read_text())).values()
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            answer = await GraphQLClient(http, token).data(text, {"first": 5})
        return answer


def register(database: DatabaseUnderTest, issuer: str, manifest: Path, client: str) -> None:
    """The README's registration: ``lighthouse documents register MANIFEST --client NAME``."""
    env = os.environ | {
        "LIGHTHOUSE_DATABASE_URL": database.app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": database.owner_url,
        "LIGHTHOUSE_OAUTH_ISSUER": issuer,
        "LIGHTHOUSE_ENVIRONMENT": "test",
    }
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "documents", "register", str(manifest), "--client", client],
        cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and "registered" in done.stderr, done.stderr


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def board(
    database: DatabaseUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Board]:
    """A gateway allowing the dev server's origin, with each app's manifest registered and
    incidents on the board."""
    into = tmp_path_factory.mktemp("frontends")
    apps = {name: build(name, into) for name in TOOLCHAINS}
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    async with serving_site(apps) as site, serving_site(apps) as unlisted:
        http = HttpSettings(cors_origins=(site,))
        settings = in_process_settings(database, issuer, pool_max_size=4, http=http)
        async with InProcessGateway(create_app(settings, list(DOMAINS.values())), port) as gateway:
            yield await _registered(database, gateway.base_url, apps, site, unlisted)


async def _registered(
    database: DatabaseUnderTest, base_url: str, apps: dict[str, BuiltApp], site: str, unlisted: str
) -> Board:
    for app in apps.values():
        if app.manifest is not None:
            register(database, base_url, app.manifest, f"board-{app.name}")
    tokens = TokenFactory(database.owner_url, base_url)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        staff = GraphQLClient(client, tokens.named("pwb-supervisor"))
        for title in ("瀏覽器看板 一", "瀏覽器看板 二"):
            await create_incident(staff, title=title)
    return Board(base_url, tokens, apps, site, unlisted)


@pytest.mark.parametrize("app", ["urql", "apollo"])
async def test_a_client_on_another_origin_reads_the_board_by_its_registered_id_over_get(
    chromium: Browser, board: Board, app: str
) -> None:
    token = board.tokens.named("pwb-dispatcher")
    page = await open_app(chromium, board.site, app, board.base_url, token)
    answer = await page.answer()
    assert answer == {"data": await board.expected(app, token)}, (answer, page.console)
    assert answer["data"]["incidents"]["totalCount"] >= 2
    (sent,) = [request for request in page.requests if request.method != "OPTIONS"]
    assert sent.method == "GET", sent.method
    asked = parse_qs(urlsplit(sent.url).query)
    assert "query" not in asked, "the text went along: the id alone must do"
    persisted = json.loads(asked["extensions"][0])["persistedQuery"]
    assert persisted["version"] == 1 and persisted["sha256Hash"], asked
    response = await sent.response()
    assert response is not None and response.status == 200
    assert (await response.all_headers())["access-control-allow-origin"] == board.site


async def test_relay_reads_the_board_by_the_id_its_compiler_wrote(
    chromium: Browser, board: Board
) -> None:
    token = board.tokens.named("pwb-dispatcher")
    page = await open_app(chromium, board.site, "relay", board.base_url, token)
    answer = await page.answer()
    assert answer == {"data": await board.expected("relay", token)}, (answer, page.console)
    (sent,) = [request for request in page.requests if request.method != "OPTIONS"]
    body = json.loads(sent.post_data or "{}")
    assert sent.method == "POST" and set(body) == {"documentId", "variables"}, body


async def test_a_page_of_an_origin_not_listed_cannot_read_the_graph(
    chromium: Browser, board: Board
) -> None:
    token = board.tokens.named("pwb-dispatcher")
    page = await open_app(chromium, board.unlisted, "urql", board.base_url, token)
    answer = await page.answer()
    assert "data" not in answer and "Failed to fetch" in answer["error"], answer
    assert any("CORS policy" in line for line in page.console), page.console


async def test_graphql_ws_in_a_page_receives_a_subscriptions_events(
    chromium: Browser, board: Board
) -> None:
    token = board.tokens.named("pwb-supervisor")
    page = await open_app(chromium, board.site, "live", board.base_url, token)
    for _ in range(100):
        if await page.events():
            break
        await asyncio.sleep(0.1)
    assert await page.events() == [{"connected": True}], page.console
    # The subscription is not acknowledged: incidents are reported until one's event comes.
    async with httpx.AsyncClient(base_url=board.base_url, timeout=30) as http:
        staff = GraphQLClient(http, board.tokens.named("pwb-supervisor"))
        titles = []
        for attempt in range(20):
            titles.append(f"瀏覽器訂閱 {attempt}")
            await create_incident(staff, title=titles[-1])
            await asyncio.sleep(0.3)
            events = await page.events()
            if len(events) > 1:
                break
    change = events[1]["data"]["incidentChanged"]
    assert change["kind"] == "CREATED" and change["incident"]["title"] in titles, events
