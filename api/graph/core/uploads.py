"""Files sent with a GraphQL multipart request (https://github.com/jaydenseric/graphql-multipart-request-spec)."""

from __future__ import annotations

from typing import Any

from api.domain.errors import FrameRejected, InvalidInput

READ_CHUNK = 64 * 1024


async def read_upload(file: Any, limit: int) -> bytes:
    """The uploaded file's bytes, at most ``limit`` of them (the body limit bounds the request;
    this bounds the file)."""
    read = getattr(file, "read", None)
    if read is None:
        raise InvalidInput("file", "must be a file part of a multipart request")
    chunks: list[bytes] = []
    size = 0
    while chunk := await read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise FrameRejected("TOO_LARGE", f"the image is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
