"""Cross-origin requests from the browser pages of other origins (a bureau's dashboard, a Vite
dev server), allowed for the exact origins of ``LIGHTHOUSE_CORS_ORIGINS`` only.

Starlette's CORS middleware answers the preflights and adds the headers; what is decided here:

- origins are exact (validated in the settings: no wildcard, no pattern);
- no credentials: callers authenticate with a bearer token in ``Authorization``, never a cookie,
  so a page of another origin cannot ride on a browser's ambient credentials, and
  ``Access-Control-Allow-Credentials`` is never sent;
- the request headers the gateway reads (the token, JSON, request ids, idempotency keys, the
  GraphQL preflight headers and Apollo's client-awareness headers) are allowed, and the response
  headers a client needs are exposed (request ids, ``Retry-After``, ``WWW-Authenticate``);
- a preflight from an origin not listed is answered 400 and goes no further.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "x-request-id",
    "idempotency-key",
    "graphql-require-preflight",
    "apollo-require-preflight",
    "apollographql-client-name",
    "apollographql-client-version",
    "x-apollo-operation-name",
)
EXPOSED_HEADERS = ("x-request-id", "retry-after", "www-authenticate", "server-timing")
PREFLIGHT_SECONDS = 600  # how long a browser may reuse a preflight's answer


def cors(origins: tuple[str, ...]) -> Middleware:
    return Middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        allow_credentials=False,
        max_age=PREFLIGHT_SECONDS,
    )
