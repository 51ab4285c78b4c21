"""A request's body, read in full before its route runs.

A protected route's transaction opens only once the body is in (``api.http.transaction``): a
caller sending its body slowly then holds its own socket, not a pooled database connection that
every other caller needs. The body limit bounds what is read, in bytes and in time
(``api.http.body_limit``).
"""

from __future__ import annotations

from collections import deque

from starlette.types import Message, Receive


async def read_body(receive: Receive) -> list[bytes] | None:
    """The body's chunks as they came; None if the caller went away before sending it all."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        if chunk := message.get("body", b""):
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks


def replaying(chunks: list[bytes], receive: Receive) -> Receive:
    """A ``receive`` handing the route the body read, then what comes next (a disconnect)."""
    pending = deque(chunks or [b""])

    async def replay() -> Message:
        if not pending:
            return await receive()
        chunk = pending.popleft()
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    return replay
