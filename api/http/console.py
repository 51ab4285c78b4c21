"""The operations console, served by the gateway from its own assets (``scripts/build-console``
builds them from ``console/`` into ``api/http/static/console``), and the demo's sign-in page.

The console is a client like any other: its page, its script and its settings
(``/console/config.json``: where the graph is and how to sign in) are public; what it shows
comes from the graph under the signed-in person's token. Every page carries a Content Security
Policy that lets it load and connect to this gateway only (and to the single sign-on's token
endpoint, when one is configured).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Final
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Route

from api.auth.demo_sign_in import (
    AuthorizationRequest,
    SignInRefused,
    console_redirect_uri,
    issue_code,
)
from api.auth.dev_principals import DEV_PRINCIPALS
from api.resources import resources_of
from api.settings import Settings

CONSOLE_DIRECTORY: Final = Path(__file__).resolve().parent / "static" / "console"
# The persisted-document manifest the build writes, registered under this client's name.
CONSOLE_MANIFEST: Final = CONSOLE_DIRECTORY / "persisted-documents.json"
CONSOLE_CLIENT: Final = "lighthouse-console"
MISSING: Final = "The console is not built; run scripts/build-console (make install does)."
MEDIA_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
AUTHORIZE_FIELDS: Final = (
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "state",
)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    """This gateway only; the single sign-on's token endpoint (the page redeems its code there)
    and the city's tile server (the map's base) are the only other places the page may reach."""
    connect = ["'self'"]
    images = ["'self'", "blob:", "data:"]
    for endpoint in (settings.console.token_endpoint, settings.console.revocation_endpoint):
        if endpoint is not None and _origin(endpoint) not in connect:
            connect.append(_origin(endpoint))
    if settings.console.tiles_url is not None:
        connect.append(_origin(settings.console.tiles_url))
        images.append(_origin(settings.console.tiles_url))
    return "; ".join(
        (
            "default-src 'self'",
            f"connect-src {' '.join(connect)}",
            f"img-src {' '.join(images)}",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        )
    )


def _headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


async def console_page(request: Request) -> Response:
    settings = resources_of(request).settings
    page = CONSOLE_DIRECTORY / "index.html"
    if not page.is_file():
        return PlainTextResponse(MISSING, status_code=503)
    return FileResponse(page, media_type="text/html; charset=utf-8", headers=_headers(settings))


async def console_asset(request: Request) -> Response:
    settings = resources_of(request).settings
    name = request.path_params["name"]
    path = (CONSOLE_DIRECTORY / "assets" / name).resolve()
    # Only files directly in the assets directory, by a name the build gives.
    if path.parent != (CONSOLE_DIRECTORY / "assets").resolve() or not path.is_file():
        return PlainTextResponse("no such asset", status_code=404)
    media_type = MEDIA_TYPES.get(path.suffix)
    if media_type is None:
        return PlainTextResponse("no such asset", status_code=404)
    return FileResponse(path, media_type=media_type, headers=_headers(settings))


async def console_config(request: Request) -> Response:
    """Where the graph is and how to sign in: public, as an OpenID provider's metadata is."""
    settings = resources_of(request).settings
    console = settings.console
    if console.authorization_endpoint is not None and console.token_endpoint is not None:
        sign_in: dict[str, object] | None = {
            "authorizationEndpoint": console.authorization_endpoint,
            "tokenEndpoint": console.token_endpoint,
            "revocationEndpoint": console.revocation_endpoint,
            "clientId": console.client_id,
            "scope": console.scope,
            "resource": console.resource,
            "demo": False,
        }
    elif settings.demo_sign_in_enabled:
        sign_in = {
            "authorizationEndpoint": f"{settings.issuer}/oauth/authorize",
            "tokenEndpoint": f"{settings.issuer}/oauth/token",
            "revocationEndpoint": f"{settings.issuer}/oauth/revoke",
            "clientId": console.client_id,
            "scope": console.scope,
            "resource": None,
            "demo": True,
        }
    else:
        sign_in = None
    return JSONResponse(
        {
            "graphql": "/graphql",
            "tiles": console.tiles_url,
            "redirectUri": console_redirect_uri(settings),
            "signIn": sign_in,
            "environment": settings.environment.value,
        },
        headers={"Cache-Control": "no-cache"},
    )


def _refused(settings: Settings, refused: SignInRefused, status: int = 400) -> Response:
    body = (
        f"<h1>Sign-in refused</h1><p><code>{html.escape(refused.error)}</code>: "
        f"{html.escape(refused.description)}</p>"
        '<p><a href="/console/">Back to the console</a></p>'
    )
    return HTMLResponse(
        _page("Sign-in refused", body), status_code=status, headers=_headers(settings)
    )


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} · Lighthouse</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/console/assets/app.css"></head>'
        f'<body class="sign-in"><main>{body}</main></body></html>'
    )


async def authorize(request: Request) -> Response:
    """The demo's sign-in page (GET): the demo principals to sign in as; choosing one (POST)
    sends the browser back to the console with a code. Outside production only."""
    settings = resources_of(request).settings
    if not settings.demo_sign_in_enabled:
        return _refused(
            settings,
            SignInRefused(
                "access_denied",
                "the demo sign-in is offered outside production only; the console signs in "
                "with the city's single sign-on (LIGHTHOUSE_CONSOLE_AUTHORIZATION_ENDPOINT)",
            ),
            403,
        )
    if request.method == "POST":
        form = await request.form()
        params = {key: str(form.get(key, "")) for key in (*AUTHORIZE_FIELDS, "principal")}
    else:
        params = {key: request.query_params.get(key, "") for key in AUTHORIZE_FIELDS}
    try:
        checked = AuthorizationRequest.checked(settings, params)
    except SignInRefused as refused:
        return _refused(settings, refused)
    if request.method == "POST":
        keys = resources_of(request).keys
        try:
            code = issue_code(keys, settings, checked, params["principal"])
        except SignInRefused as refused:
            return _refused(settings, refused)
        target = f"{checked.redirect_uri}?{urlencode({'code': code, 'state': checked.state})}"
        return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params[name])}">'
        for name in AUTHORIZE_FIELDS
    )
    choices = "".join(
        f'<li><button type="submit" name="principal" value="{html.escape(name)}">'
        f"<strong>{html.escape(name)}</strong> <span>{html.escape(principal.about)}</span>"
        "</button></li>"
        for name, principal in DEV_PRINCIPALS.items()
    )
    body = (
        "<h1>Lighthouse demo sign-in 示範登入</h1>"
        "<p>Development only: choose whom to be. A city signs in with its single sign-on.</p>"
        f'<form method="post" action="/oauth/authorize">{hidden}<ul class="principals">'
        f"{choices}</ul></form>"
    )
    return HTMLResponse(
        _page("Sign in", body), headers={**_headers(settings), "Cache-Control": "no-store"}
    )


def console_routes(settings: Settings) -> list[BaseRoute]:
    if not settings.console.enabled:
        return []
    return [
        Route("/console", lambda request: RedirectResponse("/console/", status_code=308)),
        Route("/console/", console_page),
        Route("/console/config.json", console_config),
        Route("/console/assets/{name}", console_asset),
        Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
    ]
