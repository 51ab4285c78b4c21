"""The operations console (/console) in Chromium, against a gateway that runs registered
documents only, with the console's manifest registered as deploying it does: people sign in
(authorization code with PKCE, the demo's sign-in page), read the board, act on an incident,
race each other, and see only what they may do. What the tests set up beforehand goes through
the session's ordinary gateway, on the same database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Locator, Page, Request, expect

from api.app import create_app
from api.graph.domains import DOMAINS
from api.http.console import CONSOLE_CLIENT, CONSOLE_MANIFEST
from api.settings import GraphSettings, VisionSettings
from tests.browser.test_clients import register
from tests.conftest import GatewayProcess
from tests.graph.helpers import act, bureau_ids, create_incident, kaohsiung, key_of
from tests.support import (
    DatabaseUnderTest,
    GraphQLClient,
    InProcessGateway,
    free_port,
    in_process_settings,
)
from tests.tokens import TokenFactory

pytestmark = pytest.mark.asyncio(loop_scope="module")

AXE = Path(__file__).resolve().parents[2] / "console" / "node_modules" / "axe-core" / "axe.min.js"
# Set to a directory (docs/console) to keep the README's screenshots of each screen.
SCREENSHOTS = os.environ.get("LIGHTHOUSE_SCREENSHOTS")


async def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        await page.set_viewport_size({"width": 1280, "height": 800})
        await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


@dataclass
class Console:
    base_url: str
    tokens: TokenFactory
    documents: dict[str, str]  # operation name -> registered id

    async def ask(self, token: str, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The console's own registered document, sent by its id as the console sends it."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            response = await http.post(
                "/graphql",
                json={"documentId": self.documents[operation], "variables": variables},
                headers={"Authorization": f"Bearer {token}"},
            )
        answer: dict[str, Any] = response.json()
        return answer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(database: DatabaseUnderTest, frames_dir: Path) -> AsyncIterator[Console]:
    assert CONSOLE_MANIFEST.is_file(), "the console is not built: run scripts/build-console"
    manifest = json.loads(CONSOLE_MANIFEST.read_text())
    documents = {
        re.search(r"(?:query|mutation|subscription) (\w+)", text)[1]: key  # type: ignore[index]
        for key, text in manifest.items()
    }
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = in_process_settings(
        database,
        issuer,
        pool_max_size=4,
        graph=GraphSettings(trusted_documents_only=True),
        # The frames the session's gateway stores, shown as evidence here.
        vision=VisionSettings(frames_dir=frames_dir),
    )
    register(database, issuer, CONSOLE_MANIFEST, CONSOLE_CLIENT)
    async with InProcessGateway(create_app(settings, list(DOMAINS.values())), port) as served:
        yield Console(served.base_url, TokenFactory(database.owner_url, served.base_url), documents)


@pytest_asyncio.fixture(loop_scope="module")
async def setup(gateway: GatewayProcess, tokens: TokenFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The session's ordinary gateway, for what the tests arrange beforehand."""
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
        yield http


# The browser contexts a test opened, closed after it: an open console keeps a socket and its
# subscriptions, which would cost the gateway (and the machine) work through the later tests.
OPENED: list[BrowserContext] = []


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def close_contexts() -> AsyncIterator[None]:
    yield
    while OPENED:
        await OPENED.pop().close()


async def fresh_page(browser: Browser) -> Page:
    context = await browser.new_context()
    OPENED.append(context)
    return await context.new_page()


async def sign_in(browser: Browser, console: Console, name: str) -> Page:
    """A fresh browser signed in to the console as the demo principal ``name``."""
    page = await fresh_page(browser)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(f"{console.base_url}/console/")
    await page.locator("#sign-in").click()
    if name == "pwb-dispatcher":
        await screenshot(page, "sign-in")
    await page.locator(f'button[name="principal"][value="{name}"]').click()
    await expect(page.locator(f'.who[data-subject="{name}"]')).to_be_visible()
    assert not problems, problems
    return page


def graph_tokens(page: Page) -> list[str]:
    """The Authorization header of each request the page sends to the graph, as it sends it."""
    sent: list[str] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.headers.get("authorization", ""))
            if request.url.endswith("/graphql")
            else None
        ),
    )
    return sent


async def board_ids(page: Page) -> list[str]:
    await expect(page.locator("p.count")).not_to_have_text("")
    ids: list[str] = await page.locator("table.board tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.id)"
    )
    return ids


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page (run through the DevTools
    protocol, which the page's Content Security Policy does not govern)."""
    await page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => ['serious', 'critical'].includes(v.impact))"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target)}))"
    )
    return found


async def test_sign_in_with_pkce_and_the_board_is_what_the_graph_gives_that_person(
    chromium: Browser, console: Console, setup: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
    ours = [(await create_incident(staff, title=f"主控台看板 {n}"))["incident"] for n in range(3)]
    categories = await staff.data("{ categories { code responsibleBureau { code } } }")
    other = next(
        c["code"]
        for c in categories["categories"]
        if c["responsibleBureau"] and c["responsibleBureau"]["code"] == "ENVIRONMENTAL_PROTECTION"
    )
    epb = GraphQLClient(setup, tokens.named("epb-supervisor"))
    theirs = (await create_incident(epb, title="環保局案件", category=other))["incident"]

    page = await sign_in(chromium, console, "pwb-dispatcher")
    shown = await board_ids(page)
    direct = await console.ask(
        console.tokens.named("pwb-dispatcher"),
        "Board",
        {"first": 50, "filter": {"statusClass": ["OPEN"]}},
    )
    assert "errors" not in direct, direct
    assert shown == [edge["node"]["id"] for edge in direct["data"]["incidents"]["edges"]]
    assert {incident["id"] for incident in ours} <= set(shown)
    assert theirs["id"] not in shown
    await screenshot(page, "board")

    # Searching and the bureau are the graph's filters: the board shows what the graph gives.
    async def graph_gives(filter: dict[str, Any]) -> list[str]:
        token = console.tokens.named("pwb-dispatcher")
        answer = await console.ask(token, "Board", {"first": 50, "filter": filter})
        assert "errors" not in answer, answer
        return [edge["node"]["id"] for edge in answer["data"]["incidents"]["edges"]]

    def row(incident: dict[str, Any]) -> Locator:
        return page.locator(f'table.board tbody tr[data-id="{incident["id"]}"]')

    await page.locator("#filter-text").fill("主控台看板   1")
    searched = await graph_gives({"statusClass": ["OPEN"], "search": "主控台看板   1"})
    assert ours[1]["id"] in searched and ours[0]["id"] not in searched
    await expect(row(ours[0])).to_have_count(0)
    await expect(page.locator("table.board tbody tr")).to_have_count(len(searched))
    assert await board_ids(page) == searched
    await page.locator("#filter-text").fill(ours[2]["caseNumber"])
    await expect(row(ours[1])).to_have_count(0)
    await expect(page.locator("table.board tbody tr")).to_have_count(1)
    assert await board_ids(page) == [ours[2]["id"]]
    await page.locator("#filter-text").fill("")
    await page.locator("#filter-bureau").select_option("ENVIRONMENTAL_PROTECTION")
    await expect(page.locator("table.board tbody tr")).to_have_count(0)
    assert (
        await graph_gives({"statusClass": ["OPEN"], "bureauCode": ["ENVIRONMENTAL_PROTECTION"]})
        == []
    )
    await page.locator("#filter-bureau").select_option("PUBLIC_WORKS")
    await expect(page.locator("table.board tbody tr")).to_have_count(len(shown))
    assert await board_ids(page) == shown
    # The page loaded from this gateway only, and says so to the browser.
    response = await page.request.get(f"{console.base_url}/console/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert await axe_violations(page) == []


async def test_a_dispatcher_takes_an_incident_through_the_workflow_and_the_graph_and_audit_agree(
    chromium: Browser, console: Console, setup: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
    incident = (await create_incident(staff, title="主控台流程", source="VLM"))["incident"]
    assert incident["status"] == "DETECTED"
    page = await sign_in(chromium, console, "pwb-supervisor")
    await page.goto(f"{console.base_url}/console/#/incident/{incident['id']}")
    status = page.locator("dd.status")
    await expect(status).to_have_attribute("data-status", "DETECTED")
    assert await axe_violations(page) == []

    async def take(action: str, status_after: str, **fields: str) -> None:
        form = page.locator(f'form[data-action="{action}"]')
        for name, value in fields.items():
            control = form.locator(f'[name="{name}"]')
            if await control.evaluate("element => element.tagName") == "SELECT":
                await control.select_option(value)
            else:
                await control.fill(value)
        await form.locator("button").click()
        await expect(status).to_have_attribute("data-status", status_after)

    await take("VERIFY", "VERIFIED")
    await screenshot(page, "incident")
    await take("DISPATCH", "DISPATCHED", crew="養護一隊")
    await take("START_WORK", "IN_PROGRESS")
    await take("RESOLVE", "RESOLVED")
    await take("CLOSE", "CLOSED", reason="FIXED")
    await expect(page.locator("p.no-actions")).to_be_visible()

    read = await staff.data(
        "query($id: ID!) { incident(id: $id) { status closingReason workOrders { crew } } }",
        {"id": incident["id"]},
    )
    assert read["incident"] == {
        "status": "CLOSED",
        "closingReason": "FIXED",
        "workOrders": [{"crew": "養護一隊"}],
    }
    auditor = GraphQLClient(setup, tokens.named("auditor"))
    records = await auditor.data(
        'query($r: String) { auditRecords(first: 50, filter: {resource: $r, category: "graphql",'
        ' subject: "pwb-supervisor"}) { edges { node { operation clientId decision'
        " documentHash } } } }",
        {"r": incident["id"]},
    )
    seen = [edge["node"] for edge in records["auditRecords"]["edges"]]
    taken = {record["operation"] for record in seen if record["clientId"] == CONSOLE_CLIENT}
    assert {"Verify", "Dispatch", "StartWork", "Resolve", "Close"} <= taken, seen
    assert all(record["decision"] == "ALLOW" for record in seen if record["operation"] in taken)


async def test_a_duplicate_is_picked_from_the_nearest_of_its_kind_or_named_by_case_number(
    chromium: Browser, console: Console, setup: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
    north = 180 / (math.pi * 6_378_168)  # a metre north, in degrees (earthdistance's)
    base = 22.69 + int.from_bytes(os.urandom(2)) / 65536 * 0.02  # a place of the test's own

    async def report(title: str, meters: float) -> dict[str, Any]:
        at = kaohsiung(base + meters * north, 120.35)
        return dict((await create_incident(staff, title=title, location=at))["incident"])

    original, nearby = await report("重複原案", 0), await report("附近同類", 120)
    copy = await report("重複通報", 40)
    elsewhere = await report("遠處原案", 5000)
    epb = GraphQLClient(setup, tokens.named("epb-supervisor"))
    categories = await staff.data("{ categories { code responsibleBureau { code } } }")
    theirs_category = next(
        c["code"]
        for c in categories["categories"]
        if c["responsibleBureau"] and c["responsibleBureau"]["code"] == "ENVIRONMENTAL_PROTECTION"
    )
    theirs = (await create_incident(epb, title="環保局案件", category=theirs_category))["incident"]

    page = await sign_in(chromium, console, "pwb-supervisor")
    await page.goto(f"{console.base_url}/console/#/incident/{copy['id']}")
    form = page.locator('form[data-action="MARK_DUPLICATE"]')
    offered = await staff.data(
        "query($id: ID!) { incident(id: $id) { duplicateCandidates { incident { caseNumber } } } }",
        {"id": copy["id"]},
    )
    expected = [c["incident"]["caseNumber"] for c in offered["incident"]["duplicateCandidates"]]
    assert expected[:2] == [original["caseNumber"], nearby["caseNumber"]]
    choices = form.locator("label.candidate")
    await expect(choices).to_have_count(len(expected))
    shown = [text.split()[0] for text in await choices.all_inner_texts()]
    assert shown == expected
    assert await axe_violations(page) == []
    await form.locator(f'label.candidate:has-text("{nearby["caseNumber"]}") input').check()
    await form.locator("button").click()
    await expect(page.locator("dd.status")).to_have_attribute("data-status", "CLOSED")
    read = await staff.data(
        "query($id: ID!) { incident(id: $id) { closingReason duplicateOf { id } } }",
        {"id": copy["id"]},
    )
    assert read["incident"] == {"closingReason": "DUPLICATE", "duplicateOf": {"id": nearby["id"]}}
    await expect(page.locator("ul.duplicates")).to_contain_text(nearby["caseNumber"])
    await page.goto(f"{console.base_url}/console/#/incident/{nearby['id']}")
    await expect(page.locator("ul.duplicates")).to_contain_text(copy["caseNumber"])

    # By case number: one the person cannot see is not found, and nothing changes; one they
    # see is linked.
    await page.goto(f"{console.base_url}/console/#/incident/{original['id']}")
    form = page.locator('form[data-action="MARK_DUPLICATE"]')
    await form.locator('[name="caseNumber"]').fill(theirs["caseNumber"])
    await form.locator("button").click()
    await expect(page.locator("p.notice")).to_contain_text(theirs["caseNumber"])
    await expect(page.locator("dd.status")).to_have_attribute("data-status", "VERIFIED")
    await form.locator('[name="caseNumber"]').fill(elsewhere["caseNumber"].lower())
    await form.locator("button").click()
    await expect(page.locator("dd.status")).to_have_attribute("data-status", "CLOSED")
    read = await staff.data(
        "query($id: ID!) { incident(id: $id) { duplicateOf { id } } }", {"id": original["id"]}
    )
    assert read["incident"]["duplicateOf"] == {"id": elsewhere["id"]}

    # A transfer is in the incident's history, from and to whom, why and by whom.
    bureaus = await bureau_ids(staff)
    moved = await report("移轉案件", 9000)
    await act(
        staff, "TRANSFER", moved, toBureauId=bureaus["WATER_RESOURCES"], reason="排水屬水利局"
    )
    await page.goto(f"{console.base_url}/console/#/incident/{moved['id']}")
    transfer = page.locator("ul.transfers li")
    await expect(transfer).to_have_count(1)
    await expect(transfer).to_contain_text("排水屬水利局")
    await expect(transfer).to_contain_text("pwb-supervisor")
    assert await axe_violations(page) == []


async def test_two_people_racing_on_one_incident_one_succeeds_the_other_sees_the_new_state(
    chromium: Browser, console: Console, setup: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
    incident = (await create_incident(staff, title="主控台競爭", source="VLM"))["incident"]
    pages = [await sign_in(chromium, console, "pwb-supervisor") for _ in range(2)]
    for page in pages:
        await page.goto(f"{console.base_url}/console/#/incident/{incident['id']}")
        await expect(page.locator("dd.status")).to_have_attribute("data-status", "DETECTED")
    first, second = pages
    await first.locator('form[data-action="VERIFY"] button').click()
    await expect(first.locator("dd.status")).to_have_attribute("data-status", "VERIFIED")
    await second.locator('form[data-action="VERIFY"] button').click()
    # Its version was stale: the conflict is said, and the new state shown.
    await expect(second.locator("p.notice")).to_contain_text("其他人已更新此案件")
    await expect(second.locator("dd.status")).to_have_attribute("data-status", "VERIFIED")
    await screenshot(second, "conflict")
    events = await staff.data(
        "query($id: ID!) { incident(id: $id) { events(limit: 10) { kind } } }",
        {"id": incident["id"]},
    )
    assert [e["kind"] for e in events["incident"]["events"]].count("VERIFY") == 1


async def test_a_viewer_sees_no_action_and_a_forged_one_is_refused(
    chromium: Browser, console: Console, setup: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
    incident = (await create_incident(staff, title="主控台檢視", source="VLM"))["incident"]
    page = await sign_in(chromium, console, "pwb-viewer")
    await page.goto(f"{console.base_url}/console/#/incident/{incident['id']}")
    await expect(page.locator("dd.status")).to_have_attribute("data-status", "DETECTED")
    await expect(page.locator("p.no-actions")).to_be_visible()
    assert await page.locator("form.action").count() == 0
    # The same request the console would send, with the viewer's token: refused, nothing changed.
    forged = await console.ask(
        console.tokens.named("pwb-viewer"),
        "Verify",
        {"input": {"id": incident["id"], "expectedVersion": incident["version"]}},
    )
    assert forged["data"]["result"]["__typename"] == "Forbidden", forged
    read = await staff.data(
        "query($id: ID!) { incident(id: $id) { status version } }", {"id": incident["id"]}
    )
    assert read["incident"] == {"status": "DETECTED", "version": incident["version"]}


async def test_a_new_incident_appears_on_an_open_board_and_text_is_refused(
    chromium: Browser, console: Console, setup: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    page = await sign_in(chromium, console, "pwb-supervisor")
    await board_ids(page)
    await expect(page.locator(".live")).to_have_text(re.compile("即時|Live"))
    staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
    created = (await create_incident(staff, title="主控台即時"))["incident"]
    row = page.locator(f'table.board tbody tr[data-id="{created["id"]}"]')
    await expect(row).to_be_visible()
    await expect(row).to_contain_text("主控台即時")
    # The gateway runs registered documents only: a text is refused, over HTTP as over the socket.
    async with httpx.AsyncClient(base_url=console.base_url, timeout=30) as http:
        refused = await http.post(
            "/graphql",
            json={"query": "{ me { subject } }"},
            headers={"Authorization": f"Bearer {console.tokens.named('pwb-supervisor')}"},
        )
    assert refused.status_code == 400
    assert "registered documents only" in refused.text
    over_socket = await page.evaluate(
        """token => new Promise((resolve, reject) => {
            const socket = new WebSocket(location.origin.replace("http", "ws") + "/graphql",
                                         "graphql-transport-ws");
            socket.onopen = () => socket.send(JSON.stringify(
                {type: "connection_init", payload: {Authorization: "Bearer " + token}}));
            socket.onmessage = (event) => {
                const message = JSON.parse(event.data);
                if (message.type === "connection_ack") {
                    socket.send(JSON.stringify({id: "1", type: "subscribe", payload:
                        {query: "subscription { incidentChanged { kind } }"}}));
                } else { socket.close(); resolve(message); }
            };
            socket.onerror = reject;
            // An accepted subscription says nothing until an incident changes.
            setTimeout(() => { socket.close(); resolve({type: "accepted"}); }, 5000);
        })""",
        console.tokens.named("pwb-supervisor"),
    )
    assert over_socket["type"] == "error", over_socket
    assert over_socket["payload"][0]["extensions"]["code"] == "TRUSTED_DOCUMENT_REQUIRED"


async def test_the_demo_sign_in_refuses_a_wrong_verifier_and_other_redirects(
    console: Console,
) -> None:
    async with httpx.AsyncClient(base_url=console.base_url, timeout=30) as http:
        config = (await http.get("/console/config.json")).json()
        assert config["signIn"]["demo"] is True
        redirect = config["redirectUri"]
        verifier = "v" * 43
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        authorization = {
            "response_type": "code",
            "client_id": CONSOLE_CLIENT,
            "redirect_uri": redirect,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "s1",
        }
        elsewhere = await http.get(
            "/oauth/authorize", params=authorization | {"redirect_uri": "http://evil.example/"}
        )
        assert elsewhere.status_code == 400 and "redirect_uri must be" in elsewhere.text
        chosen = await http.post(
            "/oauth/authorize", data=authorization | {"principal": "pwb-viewer"}
        )
        assert chosen.status_code == 303
        code = httpx.URL(chosen.headers["location"]).params["code"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "client_id": CONSOLE_CLIENT,
        }
        wrong = await http.post("/oauth/token", data=form | {"code_verifier": "w" * 43})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        # The code is no access token.
        as_token = await http.post(
            "/graphql",
            json={"documentId": console.documents["Viewer"]},
            headers={"Authorization": f"Bearer {code}"},
        )
        assert as_token.status_code == 401
        right = await http.post("/oauth/token", data=form | {"code_verifier": verifier})
        assert right.status_code == 200, right.text
        token = right.json()["access_token"]
        me = await console.ask(token, "Viewer", {})
        assert me["data"]["me"]["subject"] == "pwb-viewer"


async def test_with_the_citys_sign_on_configured_the_demo_sign_in_is_refused(
    database: DatabaseUnderTest,
) -> None:
    """The console then sends people to the city's single sign-on; the gateway's demo page and
    grant are closed (as they are in production, whatever is configured)."""
    from api.settings import ConsoleSettings, DatabaseSettings, Environment, OAuthSettings, Settings

    sign_on = ConsoleSettings(
        authorization_endpoint="https://sso.kcg.example/authorize",
        token_endpoint="https://sso.kcg.example/token",
        scope="openid incidents:read",
    )
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = in_process_settings(database, issuer, pool_max_size=2, console=sign_on)
    assert not settings.demo_sign_in_enabled
    async with (
        InProcessGateway(create_app(settings, list(DOMAINS.values())), port) as served,
        httpx.AsyncClient(base_url=served.base_url, timeout=30) as http,
    ):
        page = await http.get("/oauth/authorize", params={"response_type": "code"})
        assert page.status_code == 403 and "outside production only" in page.text
        grant = await http.post(
            "/oauth/token", data={"grant_type": "authorization_code", "code": "x"}
        )
        assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
        config = (await http.get("/console/config.json")).json()
        assert config["signIn"]["authorizationEndpoint"] == "https://sso.kcg.example/authorize"
        assert config["signIn"]["demo"] is False
        # The page may redeem its code at the sign-on's token endpoint, and nowhere else.
        policy = (await http.get("/console/")).headers["content-security-policy"]
        assert "connect-src 'self' https://sso.kcg.example;" in policy
        metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert metadata["grant_types_supported"] == ["client_credentials"]
    production = Settings(
        environment=Environment.PRODUCTION,
        database=DatabaseSettings(url="postgresql://app@db/lighthouse"),
        oauth=OAuthSettings(key_encryption_key=base64.b64encode(os.urandom(32)).decode()),
    )
    assert not production.demo_sign_in_enabled


async def test_staff_sign_in_with_the_citys_openid_provider_by_pkce(
    chromium: Browser,
    database: DatabaseUnderTest,
    setup: httpx.AsyncClient,
    tokens: TokenFactory,
    tmp_path: Path,
) -> None:
    """A third-party OpenID provider (oidc-provider) as the city's sign-on: the console sends
    the person there, they log in, and the console redeems the code with its verifier at the
    provider's token endpoint (cross-origin, as the page's policy allows) and reads the graph
    with the provider's token, mapped to a Public Works dispatcher. Its access tokens live 65
    seconds: the console renews one with the refresh token a minute before it ends, and reads
    the graph with the new one."""
    from api.settings import ConsoleSettings, OAuthSettings, TrustedIssuer
    from tests.conftest import SSO_AUDIENCE, SSO_CLIENTS
    from tests.oidc_provider import OidcProvider

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    provider = OidcProvider(
        SSO_AUDIENCE,
        SSO_CLIENTS,
        tmp_path / "sso.log",
        public_clients=[
            {"client_id": CONSOLE_CLIENT, "redirect_uris": [f"{issuer}/console/"], "refresh": True}
        ],
        accounts={"chen.dispatcher": {"department": "PWB", "groups": ["dispatcher"]}},
        access_token_ttl=65,
    )
    provider.start()
    try:
        trusted = TrustedIssuer(
            issuer=provider.issuer,
            audience=SSO_AUDIENCE,
            bureau_claim="department",
            bureau_map={"PWB": "PUBLIC_WORKS"},
            roles_claim="groups",
        )
        settings = in_process_settings(
            database,
            issuer,
            pool_max_size=2,
            graph=GraphSettings(trusted_documents_only=True),
            console=ConsoleSettings(
                authorization_endpoint=f"{provider.issuer}/auth",
                token_endpoint=f"{provider.issuer}/token",
                scope="openid incidents:read incidents:write assets:read",
                resource=SSO_AUDIENCE,
            ),
        )
        settings = settings.model_copy(
            update={"oauth": OAuthSettings(issuer=issuer, trusted_issuers=[trusted])}
        )
        register(database, issuer, CONSOLE_MANIFEST, CONSOLE_CLIENT)
        staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
        mine = (await create_incident(staff, title="單一登入看板"))["incident"]
        async with InProcessGateway(create_app(settings, list(DOMAINS.values())), port) as served:
            page = await fresh_page(chromium)
            tokens_sent = graph_tokens(page)
            renewals: list[Request] = []
            page.on(
                "request",
                lambda request: (
                    renewals.append(request)
                    if request.url == f"{provider.issuer}/token"
                    and "grant_type=refresh_token" in (request.post_data or "")
                    else None
                ),
            )
            await page.goto(f"{served.base_url}/console/")
            await page.locator("#sign-in").click()
            # oidc-provider's development login and consent pages.
            await page.wait_for_url(f"{provider.issuer}/**")
            login = page.locator('input[name="login"]')
            if not await login.count():
                raise AssertionError(f"{page.url}\n{(await page.content())[:3000]}")
            await login.fill("chen.dispatcher")
            await page.locator('input[name="password"]').fill("any")
            await page.locator('button[type="submit"]').click()
            await page.locator('button[type="submit"]').click()
            # External subjects are named by their issuer.
            who = page.locator(f'.who[data-subject="{provider.issuer}#chen.dispatcher"]')
            await expect(who).to_be_visible()
            await expect(page.locator(".who")).to_contain_text("PUBLIC_WORKS")
            row = page.locator(f'table.board tbody tr[data-id="{mine["id"]}"]')
            await expect(row).to_be_visible()
            # Staff's report is verified as it is made: a dispatcher may dispatch it, not close it.
            await row.locator("a").click()
            await expect(page.locator('form[data-action="DISPATCH"]')).to_be_visible()
            assert await page.locator('form[data-action="CLOSE"]').count() == 0
            first = tokens_sent[-1]
            # A minute before the token ends (here: five seconds after sign-in), the console
            # renews it with its refresh token, and its next reads carry the new one.
            for _ in range(300):
                if renewals:
                    break
                await asyncio.sleep(0.1)
            assert renewals, "the console did not renew its token"
            renewed = await renewals[0].response()
            assert renewed is not None and renewed.ok, renewed and await renewed.text()
            await page.locator('a[href="#/board"]').first.click()
            await expect(row).to_be_visible()
            assert tokens_sent[-1] != first and tokens_sent[-1].startswith("Bearer ")
            await expect(who).to_be_visible()
    finally:
        provider.stop()


async def test_an_auditor_reads_the_records_and_verifies_the_chain(
    chromium: Browser, console: Console, setup: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
    incident = (await create_incident(staff, title="主控台稽核"))["incident"]
    page = await sign_in(chromium, console, "auditor")
    # An auditor reads no incidents: the console opens on the audit screen.
    await expect(page.locator("h1")).to_have_text(re.compile("稽核紀錄|Audit"))
    await page.locator("#audit-subject").fill("pwb-supervisor")
    await page.locator("#audit-resource").fill(incident["id"])
    await page.locator("form.filters button").click()
    first = page.locator("table.audit tbody tr").first
    await expect(first).to_contain_text("pwb-supervisor")
    await first.locator("button").click()
    await expect(page.locator("pre.record")).to_contain_text("Incident:")
    await page.locator("#verify-chain").click()
    await expect(page.locator("p.chain")).to_have_attribute("data-intact", "true")
    await expect(page.locator(".policies details").first).to_be_visible()
    await screenshot(page, "audit")
    assert await axe_violations(page) == []


@asynccontextmanager
async def as_owner(database: DatabaseUnderTest) -> AsyncIterator[asyncpg.Connection]:
    """The database's owner, for what a test sets up below the graph."""
    owner = await asyncpg.connect(database.owner_url)
    try:
        await owner.execute("SET search_path = lighthouse, public")
        yield owner
    finally:
        await owner.close()


async def camera_of_public_works(owner: asyncpg.Connection) -> asyncpg.Record:
    return await owner.fetchrow(
        "INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
        " SELECT 'CAM-CONSOLE-' || floor(random() * 1e9)::text, 'CAMERA', '主控台相機', id,"
        " 22.62, 120.30, 'tests' FROM bureau WHERE code = 'PUBLIC_WORKS'"
        " RETURNING id, code, bureau_id"
    )


async def new_frame(owner: asyncpg.Connection, camera: asyncpg.Record) -> bytes:
    """A frame of ``camera``'s, a row without an image; its SHA-256."""
    sha = os.urandom(32)
    await owner.execute(
        "INSERT INTO frame (sha256, camera_id, bureau_id, media_type, size_bytes, width,"
        " height, captured_at, uploaded_by) VALUES ($1, $2, $3, 'image/png', 1, 1, 1,"
        " now(), 't')",
        sha, camera["id"], camera["bureau_id"],
    )  # fmt: skip
    return sha


async def finding(
    owner: asyncpg.Connection,
    camera: asyncpg.Record,
    incident: dict[str, Any],
    confidence: float,
    sha: bytes | None = None,
) -> int:
    """A camera finding that opened ``incident``, in frame ``sha`` (a new row without an image
    when none is given), analysed by city-vlm 1 with prompt console-1."""
    await owner.execute(
        "INSERT INTO vision_prompt (version, text, schema) VALUES ('console-1', 'q', '{}')"
        " ON CONFLICT DO NOTHING"
    )
    if sha is None:
        sha = await new_frame(owner, camera)
    analysis = await owner.fetchval(
        "INSERT INTO frame_analysis (frame_sha256, bureau_id, model, model_version,"
        " prompt_version, outcome, raw_answer, latency_ms)"
        " VALUES ($1, $2, 'city-vlm', '1', 'console-1', 'FINDINGS', '{}', 5) RETURNING id",
        sha, camera["bureau_id"],
    )  # fmt: skip
    detection = await owner.fetchval(
        "INSERT INTO detection (analysis_id, frame_sha256, camera_id, bureau_id, category,"
        " confidence, latitude, longitude, outcome, incident_id)"
        " VALUES ($1, $2, $3, $4, 'POTHOLE', $5, 22.62, 120.30, 'OPENED', $6) RETURNING id",
        analysis, sha, camera["id"], camera["bureau_id"], confidence, key_of(incident["id"]),
    )  # fmt: skip
    return int(detection)


async def test_findings_are_reviewed_from_a_queue_by_keyboard_and_button(
    chromium: Browser,
    console: Console,
    database: DatabaseUnderTest,
    setup: httpx.AsyncClient,
    tokens: TokenFactory,
) -> None:
    """Three camera findings whose incidents wait for a person: the queue shows them surest
    first; the dispatcher confirms one with the keyboard and rejects one with a button, and the
    review outcomes (the model's ground truth) follow."""
    staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
    async with as_owner(database) as owner:
        camera = await camera_of_public_works(owner)
        found: dict[float, tuple[dict[str, Any], int]] = {}
        for confidence in (0.61, 0.97, 0.83):
            incident = (await create_incident(staff, title=f"待審 {confidence}", source="VLM"))[
                "incident"
            ]
            found[confidence] = (incident, await finding(owner, camera, incident, confidence))

        page = await sign_in(chromium, console, "pwb-supervisor")
        await page.goto(f"{console.base_url}/console/#/review")
        items = page.locator("ol.queue li")
        await expect(items.first).to_be_visible()
        shown: list[str] = await items.evaluate_all("items => items.map(i => i.dataset.id)")
        by_key = {key_of(i): i for i in shown}
        ours = [by_key[found[c][1]] for c in (0.97, 0.83, 0.61)]
        assert [shown.index(i) for i in ours] == sorted(shown.index(i) for i in ours)
        assert await axe_violations(page) == []
        await screenshot(page, "review")
        # The keyboard: down to the surest of ours, then c.
        for _ in range(shown.index(ours[0])):
            await page.keyboard.press("j")
        await expect(page.locator(f'ol.queue li[data-id="{ours[0]}"]')).to_have_attribute(
            "aria-current", "true"
        )
        await page.keyboard.press("c")
        await expect(page.locator(f'ol.queue li[data-id="{ours[0]}"]')).to_have_count(0)
        # A button: reject the second as a false report.
        await page.locator(f'ol.queue li[data-id="{ours[1]}"] button.reject').click()
        await expect(page.locator(f'ol.queue li[data-id="{ours[1]}"]')).to_have_count(0)
        await expect(page.locator(f'ol.queue li[data-id="{ours[2]}"]')).to_be_visible()

        outcomes = {
            row["detection_id"]: row["outcome"]
            for row in await owner.fetch(
                "SELECT detection_id, outcome FROM detection_review"
                " WHERE detection_id = ANY($1::bigint[])",
                [found[c][1] for c in (0.97, 0.83, 0.61)],
            )
        }
        assert outcomes == {
            found[0.97][1]: "CONFIRMED",
            found[0.83][1]: "REJECTED",
            found[0.61][1]: "PENDING",
        }


async def test_the_evidence_image_is_shown_by_a_link_to_whom_may_see_it(
    chromium: Browser,
    console: Console,
    database: DatabaseUnderTest,
    setup: httpx.AsyncClient,
    tokens: TokenFactory,
) -> None:
    from tests.vision.conftest import post_frame
    from tests.vision.images import photo

    staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
    async with as_owner(database) as owner:
        camera = await camera_of_public_works(owner)
        gateway = tokens.custom(
            subject="pwb-camera-gateway", kind="service", bureau="PUBLIC_WORKS",
            scopes=["incidents:read", "incidents:write", "assets:read"],
        )  # fmt: skip
        sent = await post_frame(setup, gateway, camera["code"], photo(91))
        assert sent.status_code == 201, sent.text
        sha = sent.json()["frame"]["sha256"]
        incident = (await create_incident(staff, title="主控台證據", source="VLM"))["incident"]
        await finding(owner, camera, incident, 0.88, bytes.fromhex(sha))

    page = await sign_in(chromium, console, "pwb-supervisor")
    await page.goto(f"{console.base_url}/console/#/incident/{incident['id']}")
    image = page.locator("ul.detections img")
    await expect(image).to_be_visible()
    await expect(page.locator("ul.detections .model")).to_have_text("city-vlm@1 · console-1")
    width = await image.evaluate("img => img.complete ? img.naturalWidth : 0")
    assert width == 64  # the stored frame, shown through its link
    src = await image.get_attribute("src")
    assert src is not None and "grant=" in src and console.tokens.named("pwb-supervisor") not in src
    assert await axe_violations(page) == []
    # A dispatcher without pii:read sees the finding, not the picture.
    other = await sign_in(chromium, console, "pwb-dispatcher")
    await other.goto(f"{console.base_url}/console/#/incident/{incident['id']}")
    await expect(other.locator("ul.detections p.masked")).to_be_visible()
    assert await other.locator("ul.detections img").count() == 0


async def evaluated_set(owner: asyncpg.Connection) -> str:
    """A labelled set of the Research, Development and Evaluation Commission's own frames, and a
    run of city-vlm 1 over it: a finding labelled so, one not labelled, one labelled and missed
    (one true positive, one false positive, one false negative for POTHOLE). Its name."""
    name = f"console-set-{os.urandom(3).hex()}"
    camera = await owner.fetchrow(
        "INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
        " SELECT 'CAM-EVAL-' || floor(random() * 1e9)::text, 'CAMERA', '評測相機', id,"
        " 22.62, 120.30, 'tests' FROM bureau WHERE code = 'RDEC' RETURNING id, bureau_id"
    )
    set_id = await owner.fetchval(
        "INSERT INTO evaluation_set (name, version, bureau_id, source, categories, created_by)"
        " VALUES ($1, 1, $2, 'MANIFEST', ARRAY['POTHOLE'], 'tests') RETURNING id",
        name, camera["bureau_id"],
    )  # fmt: skip
    run = await owner.fetchval(
        "INSERT INTO evaluation_run (set_id, bureau_id, model, model_version, prompt_version,"
        " started_by) VALUES ($1, $2, 'city-vlm', '1', 'console-1', 'tests') RETURNING id",
        set_id, camera["bureau_id"],
    )  # fmt: skip
    for labels, findings in (
        (["POTHOLE"], {"POTHOLE": 0.9}),
        ([], {"POTHOLE": 0.8}),
        (["POTHOLE"], {}),
    ):
        sha = await new_frame(owner, camera)
        await owner.execute(
            "INSERT INTO evaluation_item (set_id, frame_sha256, bureau_id, categories)"
            " VALUES ($1, $2, $3, $4)",
            set_id, sha, camera["bureau_id"], labels,
        )  # fmt: skip
        await owner.execute(
            "INSERT INTO evaluation_answer (run_id, frame_sha256, bureau_id, outcome,"
            " raw_answer, findings, latency_ms) VALUES ($1, $2, $3, $4, '{}', $5::jsonb, 5)",
            run, sha, camera["bureau_id"], "FINDINGS" if findings else "NOTHING",
            json.dumps(findings),
        )  # fmt: skip
    return name


async def test_a_model_officer_reads_each_versions_quality_as_the_graph_gives_it(
    chromium: Browser,
    console: Console,
    database: DatabaseUnderTest,
    setup: httpx.AsyncClient,
    tokens: TokenFactory,
) -> None:
    staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
    async with as_owner(database) as owner:
        camera = await camera_of_public_works(owner)
        for confidence, step in ((0.9, "VERIFY"), (0.8, "VERIFY"), (0.7, "CLOSE")):
            incident = (await create_incident(staff, title="品質", source="VLM"))["incident"]
            await finding(owner, camera, incident, confidence)
            await act(staff, step, incident)
        labelled = await evaluated_set(owner)
    page = await sign_in(chromium, console, "rdec-evaluator")
    await page.goto(f"{console.base_url}/console/#/models")
    row = page.locator('table.quality tr[data-key="city-vlm@1/POTHOLE"]')
    await expect(row).to_be_visible()
    direct = await console.ask(console.tokens.named("rdec-evaluator"), "Models", {})
    figure = next(
        q
        for q in direct["data"]["modelQuality"]
        if (q["model"], q["version"], q["category"]) == ("city-vlm", "1", "POTHOLE")
    )
    assert figure["reviewed"] >= 3
    await expect(row.locator("td.precision")).to_have_text(f"{figure['precision'] * 100:.1f}%")
    await expect(page.locator("svg[role=img]")).to_be_visible()
    # What a run measured over the officer's bureau's labelled set, as the graph gives it.
    measured = page.locator(f'section[data-set="{labelled}@1"] tr[data-key="city-vlm@1/POTHOLE"]')
    await expect(measured).to_be_visible()
    evaluations = await console.ask(console.tokens.named("rdec-evaluator"), "ModelEvaluations", {})
    (run,) = next(s["runs"] for s in evaluations["data"]["evaluationSets"] if s["name"] == labelled)
    (pothole,) = run["categories"]
    assert (pothole["truePositives"], pothole["falsePositives"], pothole["falseNegatives"]) == (
        1,
        1,
        1,
    )
    await expect(measured.locator("td.precision")).to_contain_text(
        f"{pothole['precision'] * 100:.1f}%"
    )
    await expect(measured.locator("td.recall")).to_contain_text(f"{pothole['recall'] * 100:.1f}%")
    await screenshot(page, "models")
    assert await axe_violations(page) == []


async def test_a_licensing_officer_reads_the_licences_and_downloads_a_statement(
    chromium: Browser, console: Console, setup: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    from tests.graph.licensing.test_office import CREATE, ISSUE, licence_input

    officer = GraphQLClient(setup, tokens.named("licensing-officer"))
    tag = os.urandom(4).hex()
    created = (
        await officer.data(CREATE, {"code": f"cs-{tag}", "taxId": f"{int(tag, 16) % 10**8:08d}"})
    )["createLicensee"]
    code = f"LIC-CS-{tag.upper()}"
    issued = await officer.data(ISSUE, {"licence": licence_input(created["id"], code)})
    assert issued["issueLicence"]["state"] == "ACTIVE", issued

    page = await sign_in(chromium, console, "licensing-officer")
    # No incidents to read: the console opens on licensing.
    section = page.locator(f'section.licence[data-code="{code}"]')
    await expect(section).to_be_visible()
    await expect(section).to_contain_text("ParkWise Ltd.")
    await expect(section.locator("dd.state")).to_have_attribute("data-state", "ACTIVE")
    direct = await console.ask(console.tokens.named("licensing-officer"), "Licensing", {})
    codes = [licence["code"] for licence in direct["data"]["licences"]]
    shown = await page.locator("section.licence").evaluate_all(
        "sections => sections.map(s => s.dataset.code)"
    )
    assert shown == codes
    await expect(section.locator("svg[role=img]")).to_be_visible()
    async with page.expect_download() as downloading:
        await section.locator("button.statement").click()
    download = await downloading.value
    assert download.suggested_filename.startswith(code)
    statement = await asyncio.to_thread(Path(await download.path()).read_text)
    assert statement.splitlines()[-1].startswith("TOTAL,")
    await screenshot(page, "licensing")
    assert await axe_violations(page) == []


async def test_a_frame_sent_by_a_camera_appears_live_with_its_detection(
    chromium: Browser,
    console: Console,
    database: DatabaseUnderTest,
    frames_dir: Path,
    setup: httpx.AsyncClient,
    tokens: TokenFactory,
) -> None:
    """The board is open; a Police camera sends a frame; the vision worker (its model a stand-in
    behind the serving tier's API) finds a pothole, which opens a Public Works incident: the
    finding and the incident arrive on the board without a reload."""
    from api.vision.worker import vision_worker
    from tests.vision.conftest import post_frame, worker_settings
    from tests.vision.fake_serving import FakeServing, Said
    from tests.vision.images import photo

    owner = await asyncpg.connect(database.owner_url)
    try:
        # A place of its own: no open pothole nearby for the finding to join.
        latitude = 22.55 + int.from_bytes(os.urandom(2)) / 65536 * 0.15
        camera = await owner.fetchval(
            "INSERT INTO lighthouse.asset (code, kind, name, bureau_id, latitude, longitude,"
            " created_by) SELECT 'CAM-LIVE-' || floor(random() * 1e9)::text, 'CAMERA', '即時相機',"
            " id, $1, 120.35, 'tests' FROM lighthouse.bureau WHERE code = 'POLICE' RETURNING code",
            latitude,
        )
    finally:
        await owner.close()
    page = await sign_in(chromium, console, "pwb-supervisor")
    await board_ids(page)
    await expect(page.locator(".live")).to_have_text(re.compile("即時|Live"))

    async with FakeServing() as serving:
        serving.script.findings = [Said("POTHOLE", "路面坑洞", probability=0.95)]
        stop = asyncio.Event()
        async with vision_worker(worker_settings(database, frames_dir, serving.url)) as worker:
            running = asyncio.create_task(worker.run(stop=stop))
            try:
                sent = await post_frame(setup, tokens.named("camera-gateway"), camera, photo(97))
                assert sent.status_code == 201, sent.text
                finding = page.locator("ol.findings li").filter(has_text=camera)
                await expect(finding).to_be_visible(timeout=30_000)
                await expect(finding).to_contain_text("95%")
                case = await finding.locator("a").inner_text()
                row = page.locator("table.board tbody tr").filter(has_text=case)
                await expect(row).to_be_visible()
                await expect(row).to_have_attribute("data-status", "DETECTED")
            finally:
                stop.set()
                await asyncio.wait_for(running, 30)


async def test_the_map_shows_the_incidents_and_the_pointer_in_wgs84_and_twd97(
    chromium: Browser, console: Console, setup: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    from pyproj import Transformer

    staff = GraphQLClient(setup, tokens.named("pwb-supervisor"))
    # A place of its own: the other tests' incidents share the default one.
    spot = kaohsiung(22.58 + int.from_bytes(os.urandom(2)) / 65536 * 0.1, 120.28)
    incident = (await create_incident(staff, title="地圖案件", location=spot))["incident"]
    page = await sign_in(chromium, console, "pwb-supervisor")
    external: list[str] = []
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(console.base_url) else external.append(request.url)
        ),
    )
    await page.goto(f"{console.base_url}/console/#/map")
    container = page.locator("div.map")
    await expect(container).to_have_attribute("data-incidents", re.compile("[1-9]"))
    # (wait_for_function evaluates a string in the page, which its policy forbids.)
    for _ in range(100):
        if await page.evaluate("() => !!window.lighthouseMap && window.lighthouseMap.loaded()"):
            break
        await asyncio.sleep(0.1)
    point = await page.evaluate(
        "([lng, lat]) => window.lighthouseMap.project([lng, lat])",
        [incident["location"]["longitude"], incident["location"]["latitude"]],
    )
    box = await container.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
    pointer = page.locator("p.pointer")
    await expect(pointer).to_contain_text(incident["caseNumber"])
    text = await pointer.inner_text()
    numbers = re.search(r"WGS84 ([\d.]+), ([\d.]+) · TWD97 ([\d.]+), ([\d.]+)", text)
    assert numbers, text
    latitude, longitude, x, y = (float(n) for n in numbers.groups())
    expected = Transformer.from_crs("EPSG:4326", "EPSG:3826", always_xy=True).transform(
        longitude, latitude
    )
    assert abs(expected[0] - x) < 0.2 and abs(expected[1] - y) < 0.2, (text, expected)
    # The city's outline, from the Ministry of the Interior's boundaries the build holds, is
    # drawn over the plain background, and holds the city's incidents.
    served = await (await page.request.get(f"{console.base_url}/console/outline.geojson")).json()
    (city,) = served["features"]
    assert city["properties"] == {"name": "高雄市", "nameEn": "Kaohsiung City"}
    assert _inside(spot["wgs84"]["longitude"], spot["wgs84"]["latitude"], city["geometry"])
    assert not _inside(121.56, 25.04, city["geometry"])  # Taipei
    drawn = await page.evaluate(
        "() => window.lighthouseMap.getLayer('outline')"
        " ? window.lighthouseMap.querySourceFeatures('outline').length : 0"
    )
    assert drawn > 0
    await screenshot(page, "map")
    assert external == [], external  # no tile server, font or anything else from outside
    assert await axe_violations(page) == []


def _inside(longitude: float, latitude: float, geometry: dict[str, Any]) -> bool:
    """Whether a point lies in a GeoJSON (Multi)Polygon (even-odd rule over every ring)."""
    polygons = geometry["coordinates"]
    if geometry["type"] == "Polygon":
        polygons = [polygons]
    crossings = 0
    for ring in (ring for polygon in polygons for ring in polygon):
        for (x1, y1), (x2, y2) in itertools.pairwise(ring):
            if (y1 > latitude) != (y2 > latitude) and (
                longitude < x1 + (latitude - y1) * (x2 - x1) / (y2 - y1)
            ):
                crossings += 1
    return crossings % 2 == 1


async def test_signing_out_revokes_the_token_and_a_revoked_token_signs_the_console_out(
    chromium: Browser, console: Console
) -> None:
    async def signed_in_with_token() -> tuple[Page, str]:
        page = await sign_in(chromium, console, "pwb-supervisor")
        sent = graph_tokens(page)
        await page.goto(f"{console.base_url}/console/#/review")
        await expect(page.locator("ol.queue")).to_be_attached()
        bearer = next(value for value in sent if value.startswith("Bearer "))
        return page, bearer.removeprefix("Bearer ")

    # Signing out revokes the token: it is refused from then on, wherever it is used.
    page, token = await signed_in_with_token()
    assert "data" in await console.ask(token, "Viewer", {})
    await page.locator("#sign-out").click()
    await expect(page.locator("#sign-in")).to_be_visible()
    for _ in range(50):
        if "errors" in (answer := await console.ask(token, "Viewer", {})):
            break
        await asyncio.sleep(0.1)
    assert answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", answer

    # A token revoked elsewhere (another tab signing out) signs this page out at its next call.
    page, token = await signed_in_with_token()
    async with httpx.AsyncClient(base_url=console.base_url, timeout=30) as http:
        revoked = await http.post(
            "/oauth/revoke", data={"token": token, "client_id": CONSOLE_CLIENT}
        )
    assert revoked.status_code == 200
    await page.goto(f"{console.base_url}/console/#/board")
    await expect(page.locator("#sign-in")).to_be_visible()
    await expect(page.locator("main.sign-in .notice")).to_contain_text(
        re.compile("登入已失效|session ended")
    )


async def test_the_sign_in_page_is_accessible_and_the_console_speaks_english_too(
    chromium: Browser, console: Console
) -> None:
    page = await fresh_page(chromium)
    await page.goto(f"{console.base_url}/console/")
    assert await axe_violations(page) == []
    await page.locator("#sign-in").click()
    await expect(page.locator("ul.principals")).to_be_visible()
    assert await axe_violations(page) == []
    await page.locator('button[name="principal"][value="pwb-viewer"]').click()
    await expect(page.locator("main h1")).to_have_text("案件看板")
    await page.locator("button.language").click()
    await expect(page.locator("main h1")).to_have_text("Board")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.locator("button.language").click()
    await expect(page.locator("main h1")).to_have_text("案件看板")
