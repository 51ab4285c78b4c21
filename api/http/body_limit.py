"""A bound on every request body, before any route reads it.

A declared ``Content-Length`` over the limit is answered 413 at once, unread. A body sent
without one (chunked) is counted as it arrives; the moment it passes the limit the route's read
fails, and the caller gets 413 — never a half-read request acted upon. Uploads (camera frames)
are allowed a larger limit of their own, named per request by ``larger``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LINGER_BYTES = 256 * 1024
LINGER_SECONDS = 1.0


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        larger: Callable[[Scope], int | None] = lambda scope: None,
    ) -> None:
        self.app = app
        self.default_bytes = max_bytes
        self.larger = larger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger(scope) or self.default_bytes
        declared = _content_length(scope)
        if declared is not None and (declared < 0 or declared > limit):
            await self._refuse(send, limit)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
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
                await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = orjson.dumps(
            {
                "errors": [
                    {
                        "message": f"the request body is larger than {limit} bytes",
                        "extensions": {"code": "PAYLOAD_TOO_LARGE", "limit": limit},
                    }
                ]
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
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
