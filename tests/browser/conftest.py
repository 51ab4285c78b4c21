"""A real browser for the tests: Debian's Chromium (scripts/run-tests installs it), driven by
Playwright, one per module. The apps' pages are served by a static server of their own on
``localhost`` (another origin than the gateway's ``127.0.0.1``, as a Vite dev server is), so the
browser enforces CORS on the gateway; both are loopback addresses, so Chromium's Local Network
Access has nothing to ask."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Request, async_playwright
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.browser.frontends import BuiltApp
from tests.support import InProcessGateway, free_port, wait_for_tool

CHROMIUM = os.environ.get("LIGHTHOUSE_TEST_CHROMIUM", "/usr/bin/chromium")
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>board</title></head>
<body><script type="module" src="app.js"></script></body></html>"""


def static_site(apps: Mapping[str, BuiltApp]) -> Starlette:
    """A dev server's stand-in: ``/<app>/`` is the app's page, ``/<app>/app.js`` its bundle."""

    async def page(request: StarletteRequest) -> Response:
        if request.path_params["app"] not in apps:
            return Response(status_code=404)
        return HTMLResponse(PAGE)

    async def bundle(request: StarletteRequest) -> Response:
        app = apps.get(request.path_params["app"])
        if app is None:
            return Response(status_code=404)
        return Response(app.bundle, media_type="text/javascript")

    return Starlette(routes=[Route("/{app}/", page), Route("/{app}/app.js", bundle)])


@asynccontextmanager
async def serving_site(apps: Mapping[str, BuiltApp]) -> AsyncIterator[str]:
    """The apps served on a port of their own; yields the site's origin."""
    port = free_port()
    async with InProcessGateway(static_site(apps), port):
        yield f"http://localhost:{port}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Browser]:
    wait_for_tool("chromium")
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `apt-get install chromium` (scripts/run-tests does), "
            "or set LIGHTHOUSE_TEST_CHROMIUM"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        await browser.close()


@dataclass
class AppPage:
    """A page running a built app, with the requests it made to the gateway and what its
    console said."""

    page: Page
    requests: list[Request] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def answer(self, seconds: float = 20) -> dict[str, Any]:
        """What the app's work answered (``data`` or ``error``)."""
        try:
            await self.page.wait_for_function("window.answer !== undefined", timeout=seconds * 1000)
        except Exception as error:
            raise AssertionError(f"the page never answered; its console: {self.console}") from error
        answered: dict[str, Any] = await self.page.evaluate("window.answer")
        return answered

    async def events(self) -> list[Any]:
        events: list[Any] = await self.page.evaluate("window.events")
        return events


async def open_app(browser: Browser, site: str, app: str, gateway_url: str, token: str) -> AppPage:
    """The page of ``app`` on ``site`` in a fresh browser context, calling the gateway at
    ``gateway_url`` with ``token``."""
    context = await browser.new_context()
    page = await context.new_page()
    opened = AppPage(page)
    page.on("console", lambda message: opened.console.append(message.text))
    page.on("pageerror", lambda error: opened.console.append(f"uncaught: {error}"))
    page.on(
        "request",
        lambda request: (
            opened.requests.append(request) if request.url.startswith(gateway_url) else None
        ),
    )
    setting = json.dumps({"url": f"{gateway_url}/graphql", "token": token})
    await page.add_init_script(f"window.lighthouse = {setting};")
    await page.goto(f"{site}/{app}/")
    return opened
