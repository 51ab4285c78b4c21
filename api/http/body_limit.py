"""A bound on every request body, before any route reads it.

A declared ``Content-Length`` over the limit is answered 413 at once, unread. A body sent
without one (chunked) is counted as it arrives; the moment it passes the limit the route's read
fails, and the caller gets 413 — never a half-read request acted upon. Uploads (camera frames)
are allowed a larger limit of their own, named per request by ``larger``. The refusal is worded
in the error shape of the route the request was for (``api.http.error_shape``).

A body is bounded in time too: one that has not arrived in full ``max_seconds`` after the
request began (a caller trickling it, or stalled) fails the route's read, and the caller gets
408 ``REQUEST_TIMEOUT``. What a slow caller holds is its own socket and what it sent, for that
long at most: routes read their body before taking a database connection
(``api.http.request_body``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.error_shape import error_shape_of

LINGER_BYTES = 256 * 1024
LINGER_SECONDS = 1.0


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


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
                await _send_closing(send, error_shape_of(scope).too_slow(self.max_seconds))

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        await _send_closing(send, error_shape_of(scope).too_large(limit))


async def _send_closing(send: Send, response: Response) -> None:
    """``response``, and the connection closed after it (the rest of the body is not read)."""
    response.headers["connection"] = "close"
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})


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
