"""A bound on every request body, before any route reads it.

A declared ``Content-Length`` over the limit is answered 413 at once, unread. A body sent
without one (chunked) is counted as it arrives; the moment it passes the limit the route's read
fails, and the caller gets 413 — never a half-read request acted upon. Uploads (camera frames)
are allowed a larger limit of their own, named per request by ``larger``. The refusal is a
GraphQL error, unless the route the request was for answers in a shape of its own
(``answers_too_large``: Open311's ``<errors>``).

A body is bounded in time too: one that has not arrived in full ``max_seconds`` after the
request began (a caller trickling it, or stalled) fails the route's read, and the caller gets
408 ``REQUEST_TIMEOUT``. What a slow caller holds is its own socket and what it sent, for that
long at most: routes read their body before taking a database connection
(``api.http.request_body``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import orjson
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LINGER_BYTES = 256 * 1024
LINGER_SECONDS = 1.0
TooLargeAnswer = Callable[[int], Response]
ANSWER_ATTRIBUTE = "too_large_answer"
RouteT = TypeVar("RouteT", bound=BaseRoute)


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


def answers_too_large(route: RouteT, answer: TooLargeAnswer) -> RouteT:
    """``route``, refusing a body over the limit with ``answer(limit)`` (its own error shape)."""
    setattr(route, ANSWER_ATTRIBUTE, answer)
    return route


def _route_answer(scope: Scope) -> TooLargeAnswer | None:
    """The answer of the application's route that ``scope`` is for, if it has one of its own."""
    routes: list[BaseRoute] = getattr(scope.get("app"), "routes", [])
    for route in routes:
        if route.matches(scope)[0] is Match.FULL:
            answer: TooLargeAnswer | None = getattr(route, ANSWER_ATTRIBUTE, None)
            return answer
    return None


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        larger: Callable[[Scope], int | None] = lambda scope: None,
        max_seconds: float = 60.0,
    ) -> None:
        self.app = app
        self.default_bytes = max_bytes
        self.larger = larger
        self.max_seconds = max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger(scope) or self.default_bytes
        declared = _content_length(scope)
        if declared is not None and (declared < 0 or declared > limit):
            await self._refuse(scope, send, limit)
            return
        received = 0
        started = complete = False
        deadline = asyncio.get_running_loop().time() + self.max_seconds

        async def counted_receive() -> Message:
            nonlocal received, complete
            if complete:
                # Past the body: a disconnect, which a streamed answer waits for as long as it
                # lasts.
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
                complete = not message.get("more_body", False)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await _linger(receive)
                await self._refuse(scope, send, limit)
        except BodyTooSlow:
            if not started:
                message = f"the request body did not arrive within {self.max_seconds:g} s"
                extensions = {"code": "REQUEST_TIMEOUT", "seconds": self.max_seconds}
                await _send_error(send, 408, message, extensions)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        answer = _route_answer(scope)
        if answer is not None:
            response = answer(limit)
            response.headers["connection"] = "close"
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": response.raw_headers,
                }
            )
            await send({"type": "http.response.body", "body": response.body})
            return
        message = f"the request body is larger than {limit} bytes"
        await _send_error(send, 413, message, {"code": "PAYLOAD_TOO_LARGE", "limit": limit})


async def _send_error(send: Send, status: int, message: str, extensions: dict[str, object]) -> None:
    """A coded error in GraphQL's shape, and the connection closed after it (the rest of the
    body is not read)."""
    body = orjson.dumps({"errors": [{"message": message, "extensions": extensions}]})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _linger(receive: Receive) -> None:
    """Read (and drop) a little more of a refused body, so that a caller that went just past
    the limit is reading when the answer comes, not cut off mid-send; a large body is not
    waited for."""
    drained = 0
    try:
        async with asyncio.timeout(LINGER_SECONDS):
            while drained < LINGER_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None
