"""GraphiQL served by the gateway itself: the page, its vendored assets, and the page's policy.

Strawberry's own GraphiQL page loads React and GraphiQL from unpkg.com. The city's network is
closed, so this page loads the same files, byte for byte and pinned by the same sha384 hashes,
from the gateway under ``/graphiql/``, where ``scripts/vendor-graphiql`` puts them. Its
Content-Security-Policy makes the browser itself refuse any other host.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

ASSET_DIRECTORY: Final = Path(__file__).resolve().parent / "static" / "graphiql"
DEFAULT_ASSET_PREFIX: Final = "/graphiql/"
ASSET_ROUTE_PATH: Final = "/graphiql/{name}"
ASSETS_MISSING_MESSAGE: Final = (
    "GraphiQL's assets are missing; run scripts/vendor-graphiql (make install does)"
)


@dataclass(frozen=True, slots=True)
class GraphiQLAsset:
    """One vendored file, served as ``<prefix><name>``. ``integrity`` is the SRI value that
    Strawberry's template pins for the upstream file; scripts/vendor-graphiql checks the same."""

    name: str
    package: str
    version: str
    kind: Literal["script", "stylesheet"]
    integrity: str

    @property
    def path(self) -> Path:
        return ASSET_DIRECTORY / self.name

    @property
    def media_type(self) -> str:
        if self.kind == "script":
            return "text/javascript; charset=utf-8"
        return "text/css; charset=utf-8"


# In the order the page loads them: each script needs the ones before it.
_ASSETS: Final = (
    GraphiQLAsset(
        "graphiql.min.css",
        "graphiql",
        "3.8.3",
        "stylesheet",
        "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
    ),
    GraphiQLAsset(
        "plugin-explorer.css",
        "@graphiql/plugin-explorer",
        "1.0.2",
        "stylesheet",
        "sha384-5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi",
    ),
    GraphiQLAsset(
        "react.production.min.js",
        "react",
        "18.2.0",
        "script",
        "sha384-tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8",
    ),
    GraphiQLAsset(
        "react-dom.production.min.js",
        "react-dom",
        "18.2.0",
        "script",
        "sha384-bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh",
    ),
    GraphiQLAsset(
        "graphiql.min.js",
        "graphiql",
        "3.8.3",
        "script",
        "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
    ),
    GraphiQLAsset(
        "plugin-explorer.umd.js",
        "@graphiql/plugin-explorer",
        "1.0.2",
        "script",
        "sha384-2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9",
    ),
)

# The only names the asset endpoint answers for: a request's name is looked up here and never
# joined into a path.
GRAPHIQL_ASSETS: Final[Mapping[str, GraphiQLAsset]] = MappingProxyType(
    {asset.name: asset for asset in _ASSETS}
)

# The page's own script: Strawberry's, without the CSRF cookie (Lighthouse takes bearer tokens),
# with our logo in place of GraphiQL's link to github.com. Its hash goes into the policy below,
# so it must not vary per request.
GRAPHIQL_INLINE_SCRIPT: Final = """
      const EXAMPLE_QUERY = `# Welcome to Lighthouse's GraphiQL
#
# Calls on behalf of someone need their bearer token: open "Headers" below
# and enter {"Authorization": "Bearer <token>"}. GraphiQL keeps the headers
# in this browser's local storage, and sends them with subscriptions too.
#
# Keyboard shortcuts:
#
#       Run query:  Ctrl-Enter (or press the play button)
#   Auto complete:  Ctrl-Space (or just start typing)
#
{
  __typename
}
`;

      // Query and variables travel in the page's address so that a query can be shared.
      const parameters = {};
      for (const entry of window.location.search.slice(1).split("&")) {
        const eq = entry.indexOf("=");
        if (eq >= 0) {
          parameters[decodeURIComponent(entry.slice(0, eq))] = decodeURIComponent(
            entry.slice(eq + 1),
          );
        }
      }

      function updateURL(data) {
        Object.assign(parameters, data);
        const search = Object.keys(parameters)
          .filter((key) => Boolean(parameters[key]))
          .map((key) => encodeURIComponent(key) + "=" + encodeURIComponent(parameters[key]))
          .join("&");
        history.replaceState(null, "", "?" + search);
      }

      // The GraphQL endpoint is this page's own URL, over HTTP and over a WebSocket.
      const fetchURL = new URL(window.location.pathname, window.location.href);
      const subscriptionURL = new URL(fetchURL);
      subscriptionURL.protocol = fetchURL.protocol === "https:" ? "wss:" : "ws:";

      const fetcher = GraphiQL.createFetcher({
        url: fetchURL.toString(),
        subscriptionUrl: subscriptionURL.toString(),
      });

      function GraphiQLWithExplorer() {
        const [query, setQuery] = React.useState(parameters.q || EXAMPLE_QUERY);
        const [variables, setVariables] = React.useState(parameters.variables);
        const [headers, setHeaders] = React.useState(parameters.headers);
        const explorerPlugin = GraphiQLPluginExplorer.explorerPlugin();

        return React.createElement(
          GraphiQL,
          {
            fetcher: fetcher,
            defaultEditorToolsVisibility: true,
            plugins: [explorerPlugin],
            query: query,
            variables: variables,
            headers: headers,
            onEditQuery: (newQuery) => {
              setQuery(newQuery);
              updateURL({ q: newQuery });
            },
            onEditVariables: (newVariables) => {
              setVariables(newVariables);
              updateURL({ variables: newVariables });
            },
            // Headers carry tokens: they stay out of the address.
            onEditHeaders: setHeaders,
            inputValueDeprecation: true,
            isHeadersEditorEnabled: true,
            shouldPersistHeaders: true,
          },
          React.createElement(GraphiQL.Logo, null, "Lighthouse"),
        );
      }

      const root = ReactDOM.createRoot(document.getElementById("graphiql"));
      root.render(React.createElement(GraphiQLWithExplorer));
    """

GRAPHIQL_INLINE_SCRIPT_HASH: Final = (
    "sha256-" + base64.b64encode(hashlib.sha256(GRAPHIQL_INLINE_SCRIPT.encode()).digest()).decode()
)

# connect-src is 'self' only, not the scheme-wide "ws: wss:": CSP 3 counts ws(s) to the page's
# own host as 'self' (Chrome, Firefox, and Safari since WebKit's 2022 fix), and a bare scheme
# would let the page open a WebSocket to any host. style-src keeps 'unsafe-inline' for the page's
# <style> and the style attributes GraphiQL and CodeMirror set; a hash there would void it.
GRAPHIQL_CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        f"script-src 'self' '{GRAPHIQL_INLINE_SCRIPT_HASH}'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        # The assets' URLs are relative: an injected <base> must not move them elsewhere.
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

GRAPHIQL_PAGE_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Content-Security-Policy": GRAPHIQL_CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
)

# The assets' URLs carry their package's version, so a new version is a new URL.
ASSET_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
    }
)

_PREFIX = re.compile(r"/(?:[A-Za-z0-9._~-]+/)*")

_STYLE = """
      body {
        height: 100%;
        margin: 0;
        width: 100%;
        overflow: hidden;
      }

      #graphiql {
        height: 100vh;
        display: flex;
      }

      .docExplorerHide {
        display: none;
      }

      .doc-explorer-contents {
        overflow-y: hidden !important;
      }

      .docExplorerWrap {
        width: unset !important;
        min-width: unset !important;
      }

      .graphiql-explorer-actions select {
        margin-left: 4px;
      }
    """


def asset_url(asset: GraphiQLAsset, asset_prefix: str = DEFAULT_ASSET_PREFIX) -> str:
    """The asset's URL on the gateway: a path, never a host."""
    return f"{asset_prefix}{asset.name}?v={asset.version}"


def render_graphiql_page(asset_prefix: str = DEFAULT_ASSET_PREFIX) -> str:
    """The GraphiQL page, loading every script and stylesheet from ``asset_prefix`` on the
    gateway with its ``integrity`` hash; queries and subscriptions go to the page's own URL.

    ``asset_prefix`` is a path such as ``/graphiql/``: it must start and end with ``/``, and
    anything a browser could read as a host (``//``, ``\\``, a scheme) is refused.
    """
    if not _PREFIX.fullmatch(asset_prefix):
        raise ValueError(
            f"GraphiQL's asset prefix must be an absolute path ending in '/', not {asset_prefix!r}"
        )
    stylesheets = [
        f'    <link rel="stylesheet" href="{html.escape(asset_url(asset, asset_prefix))}"'
        f' integrity="{asset.integrity}" />'
        for asset in _ASSETS
        if asset.kind == "stylesheet"
    ]
    scripts = [
        f'    <script src="{html.escape(asset_url(asset, asset_prefix))}"'
        f' integrity="{asset.integrity}"></script>'
        for asset in _ASSETS
        if asset.kind == "script"
    ]
    return "\n".join(
        (
            "<!doctype html>",
            '<html lang="en">',
            "  <head>",
            '    <meta charset="utf-8" />',
            '    <meta name="viewport" content="width=device-width, initial-scale=1" />',
            '    <meta name="referrer" content="no-referrer" />',
            "    <title>Lighthouse GraphiQL</title>",
            # An empty icon: the browser asks nobody, not even the gateway, for /favicon.ico.
            '    <link rel="icon" href="data:," />',
            f"    <style>{_STYLE}</style>",
            *stylesheets,
            "  </head>",
            "  <body>",
            '    <div id="graphiql" class="graphiql-container">Loading...</div>',
            *scripts,
            f"    <script>{GRAPHIQL_INLINE_SCRIPT}</script>",
            "  </body>",
            "</html>",
            "",
        )
    )


def graphiql_available() -> bool:
    """Whether scripts/vendor-graphiql has put every asset in place (it checks their hashes)."""
    return all(asset.path.is_file() for asset in _ASSETS)


def graphiql_page_response(asset_prefix: str = DEFAULT_ASSET_PREFIX) -> Response:
    """The page with its policy headers, or 503 naming the fix when the assets are missing."""
    if not graphiql_available():
        return PlainTextResponse(ASSETS_MISSING_MESSAGE, status_code=503)
    return HTMLResponse(render_graphiql_page(asset_prefix), headers=dict(GRAPHIQL_PAGE_HEADERS))


async def graphiql_asset(request: Request) -> Response:
    """``GET /graphiql/{name}``: one of the vendored files, or 404 for any other name."""
    name = request.path_params.get("name")
    asset = GRAPHIQL_ASSETS.get(name) if isinstance(name, str) else None
    if asset is None:
        return PlainTextResponse(
            "Not Found", status_code=404, headers={"X-Content-Type-Options": "nosniff"}
        )
    if not asset.path.is_file():
        return PlainTextResponse(ASSETS_MISSING_MESSAGE, status_code=503)
    return FileResponse(asset.path, media_type=asset.media_type, headers=dict(ASSET_HEADERS))
