"""The descriptions, served to anyone (they are documentation):

    GET /openapi               the index: each API's name, title, version and URL
    GET /openapi/{name}.json   one description, as JSON

Each answer carries an ETag of its bytes; a client that sends it back in ``If-None-Match`` is
answered 304 with no body. ``no-cache`` lets a cache keep a copy but makes it ask again, so a
new deployment's descriptions are seen at once.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http.openapi.description import ApiDescription, ApiDocument, etag_of, read

PREFIX = "/openapi"
CACHE_CONTROL = "public, no-cache"


def _answer(request: Request, body: bytes, etag: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    sent = request.headers.get("if-none-match", "")
    if etag in (tag.strip() for tag in sent.split(",")) or sent.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def openapi_routes(descriptions: Iterable[ApiDescription]) -> list[Route]:
    """The routes serving ``descriptions``, each read (and checked to be OpenAPI 3.1) here,
    once; ValueError if two share a name."""
    documents: dict[str, ApiDocument] = {}
    for description in descriptions:
        if description.name in documents:
            raise ValueError(f"two API descriptions are named {description.name!r}")
        documents[description.name] = read(description)
    index = orjson.dumps(
        {
            "apis": [
                {
                    "name": d.name,
                    "title": d.title,
                    "version": d.version,
                    "url": f"{PREFIX}/{d.name}.json",
                }
                for d in documents.values()
            ]
        }
    )
    index_etag = etag_of(index)

    async def listing(request: Request) -> Response:
        return _answer(request, index, index_etag)

    async def document(request: Request) -> Response:
        found = documents.get(request.path_params["name"])
        if found is None:
            return Response(
                orjson.dumps({"error": f"no API is described as {request.path_params['name']!r}"}),
                status_code=404,
                media_type="application/json",
            )
        return _answer(request, found.body, found.etag)

    return [
        Route(PREFIX, listing, methods=["GET"]),
        Route(PREFIX + "/{name}.json", document, methods=["GET"]),
    ]
