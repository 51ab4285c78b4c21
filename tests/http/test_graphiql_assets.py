"""GraphiQL's page and its vendored assets name no host: a browser loads everything from the
gateway, checks every file against its pinned hash, and its policy refuses any other host.

The page tests need nothing; the asset tests need scripts/vendor-graphiql to have run. Without
the assets they fail, unless LIGHTHOUSE_ALLOW_MISSING_GRAPHIQL=1 (then they skip).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request
from starlette.routing import Route

from api.http import graphiql
from api.http.graphiql import (
    ASSET_ROUTE_PATH,
    ASSETS_MISSING_MESSAGE,
    GRAPHIQL_ASSETS,
    GRAPHIQL_CONTENT_SECURITY_POLICY,
    GRAPHIQL_INLINE_SCRIPT,
    GraphiQLAsset,
    graphiql_asset,
    graphiql_available,
    graphiql_page_response,
    render_graphiql_page,
)

with warnings.catch_warnings():
    # Starlette 1.x warns at import that its test client prefers the httpx2 package when that
    # is installed; with plain httpx (this project's dependency) it works as before.
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SCRIPTS = [asset for asset in GRAPHIQL_ASSETS.values() if asset.kind == "script"]
STYLESHEETS = [asset for asset in GRAPHIQL_ASSETS.values() if asset.kind == "stylesheet"]

# A URL a browser would resolve against another host: a scheme, or "//" (or "\\", which
# browsers read as "//") at the start.
FOREIGN_URL = re.compile(r"^\s*(?:[A-Za-z][A-Za-z0-9+.-]*:|[/\\]{2})")

# Every absolute URL written as a string literal in the vendored scripts, reviewed. Minified
# scripts keep licence comments, error messages and namespaces; what matters is whether the
# browser is made to fetch one. None is fetched: each is an XML namespace (an identifier, never
# loaded), text of an error or a comment, or the href of a link that only a click follows. A new
# literal (say, after an upgrade) fails the test until someone has looked at it.
REVIEWED_URL_LITERALS: dict[str, set[str]] = {
    "react.production.min.js": set(),
    "react-dom.production.min.js": {
        "http://www.w3.org/1998/Math/MathML",  # namespace
        "http://www.w3.org/1999/xhtml",  # namespace
        "http://www.w3.org/1999/xlink",  # namespace
        "http://www.w3.org/2000/svg",  # namespace
        "http://www.w3.org/XML/1998/namespace",  # namespace
        "https://reactjs.org/docs/error-decoder.html?invariant=",  # text of thrown errors
    },
    "graphiql.min.js": {
        "http://www.w3.org/2000/svg",  # namespace of GraphiQL's inline icons
        "//example.com/",  # a comment in markdown-it's linkifier
        "http://example.org:foo",  # a comment in the url parser
        "http://json-schema.org/draft-04/schema",  # "$schema" identifier of a JSON schema
        "https://reactjs.org/link/strict-mode-string-ref",  # text of a console warning
        # text of the error thrown when React is older than 16
        "https://github.com/graphql/graphiql/blob/master/examples/graphiql-cdn/index.html#L49",
        "https://codemirror.net/5/doc/manual.html#keymaps",  # link in the shortcuts dialog
        "https://github.com/graphql/graphiql",  # the default logo's link; the page replaces it
    },
    "plugin-explorer.umd.js": {
        "http://www.w3.org/2000/svg",  # namespace of the explorer's icons
        # attribution links, rendered only with showAttribution, which the page does not pass
        "https://github.com/OneGraph/graphiql-explorer",
        "https://www.onegraph.com",
    },
}
URL_LITERAL = re.compile(
    r"""["'`]((?:[A-Za-z][A-Za-z0-9+.-]*:)?//[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+[^"'`\s]*)"""
)
# A script that loads code or data itself, from a literal absolute URL.
SCRIPT_FETCH = re.compile(
    r"""\b(?:import|importScripts|fetch|Worker|SharedWorker|WebSocket|EventSource|sendBeacon)"""
    r"""\s*\(\s*["'`](?:[A-Za-z][A-Za-z0-9+.-]*:)?//"""
)
SOURCE_MAP = re.compile(r"[#@]\s*sourceMappingURL\s*=\s*([^\s*]+)")
CSS_URL = re.compile(r"url\(\s*([\"']?)(.*?)\1\s*\)", re.IGNORECASE | re.DOTALL)


class PageParser(HTMLParser):
    """Every start tag with its attributes, and the text of each inline script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "script" and "src" not in attributes:
            self._in = "script"
            self.inline_scripts.append("")
        elif tag == "style":
            self._in = "style"
            self.styles.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.inline_scripts[-1] += data
        elif self._in == "style":
            self.styles[-1] += data


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def sha384(content: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(content).digest()).decode()


@pytest.fixture(scope="module")
def vendored() -> None:
    """The assets must be there: scripts/vendor-graphiql (make install) puts them in place."""
    if graphiql_available():
        return
    if os.environ.get("LIGHTHOUSE_ALLOW_MISSING_GRAPHIQL") == "1":
        pytest.skip(ASSETS_MISSING_MESSAGE)
    pytest.fail(ASSETS_MISSING_MESSAGE)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(Starlette(routes=[Route(ASSET_ROUTE_PATH, graphiql_asset)]))


# The page


def test_the_page_names_no_host() -> None:
    page = render_graphiql_page()
    parsed = parse(page)
    for tag, attributes in parsed.tags:
        for name, value in attributes.items():
            if value is None:
                continue
            assert not name.startswith("on"), f"<{tag} {name}>: CSP refuses inline handlers"
            if name in {"src", "href", "action", "formaction", "poster", "data", "srcset"}:
                assert not FOREIGN_URL.match(value) or value == "data:,", f"<{tag} {name}={value}>"
    for style in parsed.styles:
        assert "@import" not in style
        assert not CSS_URL.search(style)
    # Nothing absolute anywhere, inline script included (it derives its URLs from the page's).
    assert "://" not in page
    assert "unpkg" not in page
    assert "crossorigin" not in page


def test_the_page_loads_every_asset_from_the_gateway_with_its_hash() -> None:
    parsed = parse(render_graphiql_page())
    scripts = [attrs for tag, attrs in parsed.tags if tag == "script" and "src" in attrs]
    links = [
        attrs for tag, attrs in parsed.tags if tag == "link" and attrs.get("rel") == "stylesheet"
    ]
    loaded = [(attrs["src"], attrs["integrity"]) for attrs in scripts]
    loaded += [(attrs["href"], attrs["integrity"]) for attrs in links]
    expected = [(f"/graphiql/{a.name}?v={a.version}", a.integrity) for a in SCRIPTS + STYLESHEETS]
    assert sorted(loaded) == sorted(expected)
    # Each script needs the ones before it.
    assert [attrs["src"] for attrs in scripts] == [
        f"/graphiql/{a.name}?v={a.version}" for a in SCRIPTS
    ]
    assert [a.name for a in SCRIPTS] == [
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "plugin-explorer.umd.js",
    ]


def test_the_asset_prefix_is_a_path_on_the_gateway() -> None:
    page = render_graphiql_page("/tools/graphiql/")
    assert 'src="/tools/graphiql/graphiql.min.js?v=3.8.3"' in page
    assert "://" not in page
    for prefix in (
        "//cdn.example.org/",
        "https://cdn.example.org/",
        "/\\cdn.example.org/",
        "\\\\cdn.example.org/",
        "javascript:alert(1)//",
        "graphiql/",
        "/graphiql",
        '/"><script>/',
        "/a b/",
        "",
    ):
        with pytest.raises(ValueError):
            render_graphiql_page(prefix)


def test_the_policy_allows_the_inline_script_and_nothing_foreign() -> None:
    parsed = parse(render_graphiql_page())
    assert parsed.inline_scripts == [GRAPHIQL_INLINE_SCRIPT]
    assert "</script" not in GRAPHIQL_INLINE_SCRIPT.lower()
    digest = base64.b64encode(hashlib.sha256(parsed.inline_scripts[0].encode()).digest()).decode()
    directives = {
        directive.split()[0]: directive.split()[1:]
        for directive in GRAPHIQL_CONTENT_SECURITY_POLICY.split("; ")
    }
    assert directives["script-src"] == ["'self'", f"'sha256-{digest}'"]
    assert directives["default-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["base-uri"] == ["'none'"]
    # Only keywords, hashes and data: URIs; never a host, a scheme wildcard or eval.
    for directive, sources in directives.items():
        for source in sources:
            assert re.fullmatch(r"'[a-z-]+'|'sha256-[A-Za-z0-9+/=]+'|data:", source), (
                f"{directive} {source}"
            )
            assert source != "'unsafe-eval'"


def test_missing_assets_say_how_to_vendor_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: TestClient
) -> None:
    monkeypatch.setattr(graphiql, "ASSET_DIRECTORY", tmp_path)
    assert not graphiql_available()
    response = graphiql_page_response()
    assert response.status_code == 503
    assert bytes(response.body).decode() == ASSETS_MISSING_MESSAGE
    served = client.get("/graphiql/graphiql.min.js")
    assert served.status_code == 503
    assert served.text == ASSETS_MISSING_MESSAGE


# The vendored assets


@pytest.mark.usefixtures("vendored")
def test_the_page_response_carries_its_policy() -> None:
    response = graphiql_page_response()
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == GRAPHIQL_CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.usefixtures("vendored")
@pytest.mark.parametrize("asset", GRAPHIQL_ASSETS.values(), ids=lambda asset: asset.name)
def test_each_asset_matches_the_hash_the_page_pins(asset: GraphiQLAsset) -> None:
    parsed = parse(render_graphiql_page())
    pinned = {
        (attrs.get("src") or attrs.get("href") or "").split("?")[0]: attrs.get("integrity")
        for tag, attrs in parsed.tags
        if tag in {"script", "link"}
    }
    assert pinned[f"/graphiql/{asset.name}"] == sha384(asset.path.read_bytes())


@pytest.mark.usefixtures("vendored")
@pytest.mark.parametrize("asset", STYLESHEETS, ids=lambda asset: asset.name)
def test_stylesheets_load_nothing_from_another_host(asset: GraphiQLAsset) -> None:
    css = asset.path.read_text(encoding="utf-8")
    assert "@import" not in css.lower()
    for _, url in CSS_URL.findall(css):
        # GraphiQL's fonts are inlined as data: URIs; nothing else is referenced.
        assert url.startswith("data:"), url[:80]
    for url in SOURCE_MAP.findall(css):
        assert not FOREIGN_URL.match(url), url


@pytest.mark.usefixtures("vendored")
@pytest.mark.parametrize("asset", SCRIPTS, ids=lambda asset: asset.name)
def test_scripts_load_nothing_from_another_host(asset: GraphiQLAsset) -> None:
    """A script makes the browser contact a host by loading code (import(), importScripts(),
    a worker), by a request (fetch, WebSocket, EventSource, sendBeacon), or through its source
    map. None does so with a literal absolute URL, the source maps are relative (on the
    gateway, and asked for only by open developer tools), and every absolute URL literal is one
    reviewed above. URLs that arrive at run time (an image URL in a result that GraphiQL
    previews) are the policy's business: img-src and connect-src allow only the gateway."""
    script = asset.path.read_text(encoding="utf-8")
    assert not SCRIPT_FETCH.search(script)
    for url in SOURCE_MAP.findall(script):
        assert not FOREIGN_URL.match(url), url
    assert set(URL_LITERAL.findall(script)) == REVIEWED_URL_LITERALS[asset.name]


# The asset endpoint


@pytest.mark.usefixtures("vendored")
@pytest.mark.parametrize("asset", GRAPHIQL_ASSETS.values(), ids=lambda asset: asset.name)
def test_the_endpoint_serves_each_asset(client: TestClient, asset: GraphiQLAsset) -> None:
    response = client.get(f"/graphiql/{asset.name}?v={asset.version}")
    assert response.status_code == 200
    assert response.headers["content-type"] == asset.media_type
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert sha384(response.content) == asset.integrity


@pytest.mark.parametrize(
    "path",
    [
        "/graphiql/",
        "/graphiql/LICENSE.react",
        "/graphiql/SOURCES.txt",
        "/graphiql/graphiql.min.js.map",
        "/graphiql/GRAPHIQL.MIN.JS",
        "/graphiql/graphiql.min.js%00",
        "/graphiql/..",
        "/graphiql/%2e%2e",
        "/graphiql/..%2fgraphiql.py",
        "/graphiql/%2e%2e%2f%2e%2e%2fgraphiql.py",
        "/graphiql/../graphiql.py",
        "/graphiql/.%2fgraphiql.min.js",
        "/graphiql/%2fetc%2fpasswd",
    ],
)
def test_the_endpoint_refuses_every_other_name(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "name",
    ["../graphiql.py", "../../../api/http/graphiql.py", "./graphiql.min.js", "/etc/passwd", ""],
)
async def test_the_endpoint_looks_names_up_whatever_the_route_passes(name: str) -> None:
    # A route with a path convertor would hand slashes and dots to the endpoint: it only looks
    # names up, so nothing outside the whitelist is reachable whatever the route.
    scope = {"type": "http", "method": "GET", "headers": [], "path_params": {"name": name}}
    response = await graphiql_asset(Request(scope))
    assert response.status_code == 404
