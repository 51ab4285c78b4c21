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
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import orjson
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
from api.settings import Settings, SettingsError

CONSOLE_DIRECTORY: Final = Path(__file__).resolve().parent / "static" / "console"
# The persisted-document manifest the build writes, registered under this client's name.
CONSOLE_MANIFEST: Final = CONSOLE_DIRECTORY / "persisted-documents.json"
CONSOLE_CLIENT: Final = "lighthouse-console"
# The outlines the build writes (console/build.mjs), one GeoJSON file each, listed in index.json.
OUTLINES: Final = CONSOLE_DIRECTORY / "outlines"
MAX_OUTLINE_BYTES: Final = 2 * 1024 * 1024
OUTLINE_SETTING: Final = "LIGHTHOUSE_CONSOLE_OUTLINE"
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


async def console_config(request: Request, outline: str | None) -> Response:
    """Where the graph is, how to sign in and what the map draws: public, as an OpenID
    provider's metadata is."""
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
            "outline": outline,
            "redirectUri": console_redirect_uri(settings),
            "signIn": sign_in,
            "environment": settings.environment.value,
        },
        headers={"Cache-Control": "no-cache"},
    )


def city_outline(settings: Settings) -> bytes | None:
    """The outline the map draws, as a GeoJSON FeatureCollection; None when none is asked for
    or the console is not built. SettingsError, naming the setting, when it cannot be had."""
    named = settings.console.outline.strip()
    if not named:
        return None
    if Path(named).suffix in (".geojson", ".json"):
        source = Path(named)
    else:
        index = OUTLINES / "index.json"
        if not index.is_file():
            return None  # the console is not built; its page says so
        known = orjson.loads(index.read_bytes())
        wanted = _spelled(named)
        found = next(
            (o for o in known if wanted in (o["code"], _spelled(o["name"]), o["nameEn"])), None
        )
        if found is None:
            names = ", ".join(o["name"] for o in known)
            raise SettingsError(
                f"{OUTLINE_SETTING}: no outline is named {named!r}; name one of {names} (or its "
                "English name or code), give the path of a GeoJSON file, or leave it empty"
            )
        source = OUTLINES / f"{found['code']}.geojson"
    try:
        if source.stat().st_size > MAX_OUTLINE_BYTES:
            raise SettingsError(f"{OUTLINE_SETTING}: {source} is larger than 2 MiB; simplify it")
        text = source.read_bytes()
    except OSError as error:
        raise SettingsError(f"{OUTLINE_SETTING}: cannot read {source}: {error.strerror}") from None
    try:
        return orjson.dumps(outline_features(orjson.loads(text)))
    except (orjson.JSONDecodeError, ValueError) as error:
        raise SettingsError(f"{OUTLINE_SETTING}: {source} is not an outline: {error}") from None


def outline_features(document: Any) -> dict[str, Any]:
    """A GeoJSON outline (a FeatureCollection, a Feature or a geometry, of polygons in WGS84)
    as a FeatureCollection; ValueError saying what is wrong with it."""
    if not isinstance(document, dict):
        raise ValueError("expected a GeoJSON object")
    if document.get("type") == "FeatureCollection":
        features = document.get("features")
    elif document.get("type") == "Feature":
        features = [document]
    else:
        features = [{"type": "Feature", "properties": {}, "geometry": document}]
    if not isinstance(features, list) or not features:
        raise ValueError("expected at least one feature")
    for feature in features:
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict) or geometry.get("type") not in POLYGONS:
            raise ValueError("expected Polygon or MultiPolygon geometries")
        polygons = geometry.get("coordinates")
        if geometry["type"] == "Polygon":
            polygons = [polygons]
        if not isinstance(polygons, list) or not all(
            isinstance(polygon, list) and polygon for polygon in polygons
        ):
            raise ValueError("expected each polygon as a list of rings")
        for ring in (ring for polygon in polygons for ring in polygon):
            if (
                not isinstance(ring, list)
                or len(ring) < 4
                or not all(_wgs84(point) for point in ring)
            ):
                raise ValueError("expected rings of at least four [longitude, latitude] points")
    return {"type": "FeatureCollection", "features": features}


POLYGONS: Final = ("Polygon", "MultiPolygon")


def _spelled(name: str) -> str:
    """A place's name as the lookup compares it (臺 and 台 are one character, written two ways)."""
    return name.replace("臺", "台")


def _wgs84(point: Any) -> bool:
    return (
        isinstance(point, list)
        and len(point) >= 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in point[:2])
        and -180 <= point[0] <= 180
        and -90 <= point[1] <= 90
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
    outline = city_outline(settings)

    async def outline_file(request: Request) -> Response:
        if outline is None:
            return PlainTextResponse("no outline is configured", status_code=404)
        return Response(
            outline,
            media_type="application/geo+json",
            headers={**_headers(settings), "Cache-Control": "public, max-age=3600"},
        )

    async def config(request: Request) -> Response:
        return await console_config(request, "/console/outline.geojson" if outline else None)

    return [
        Route("/console", lambda request: RedirectResponse("/console/", status_code=308)),
        Route("/console/", console_page),
        Route("/console/config.json", config),
        Route("/console/outline.geojson", outline_file),
        Route("/console/assets/{name}", console_asset),
        Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
    ]
