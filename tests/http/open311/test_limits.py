"""A body over the limit sent to an Open311 route is refused in the route's own format (the
specification's ``<errors>`` or ``[{"code": 413, …}]``), declared or streamed, and unread.
(Other routes' refusals, in GraphQL's shape: tests/http/test_abuse.py.)"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.http.open311.conftest import BASE, only
from tests.support import GatewayProcess

BODY_LIMIT = 1024 * 1024  # LIGHTHOUSE_MAX_BODY_BYTES's default
FORM_TYPE = "application/x-www-form-urlencoded"


def description_of(status: int, content_type: str, body: bytes, fmt: str) -> str:
    """The description of the specification's one error, in ``fmt``, with code ``status``."""
    if fmt == "json":
        assert content_type == "application/json; charset=utf-8"
        error = only(httpx.Response(200, content=body).json())
        assert list(error) == ["code", "description"]
        assert error["code"] == status
        return str(error["description"])
    assert content_type == "text/xml; charset=utf-8"
    document = ET.fromstring(body)
    assert document.tag == "errors"
    [error_element] = list(document)
    assert error_element.findtext("code") == str(status)
    return error_element.findtext("description") or ""


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize(
    "request_line", ["POST {base}/requests.{fmt}", "GET {base}/services.{fmt}"], ids=["post", "get"]
)
async def test_a_declared_body_over_the_limit_is_refused_in_open311s_format(
    gateway: GatewayProcess, fmt: str, request_line: str
) -> None:
    line = request_line.format(base=BASE, fmt=fmt)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(
            f"{line} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM_TYPE}\r\n".encode()
            + f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode()
            + b"service_code=POTHOLE&description="
        )
        await writer.drain()
        # Answered without the other 50 MB ever being sent.
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert head.startswith(b"HTTP/1.1 413"), head
        headers = dict(
            line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if line
        )
        headers = {name.lower(): value for name, value in headers.items()}
        body = await asyncio.wait_for(
            reader.readexactly(int(headers["content-length"])), timeout=10
        )
    finally:
        writer.close()
    assert headers["x-request-id"]
    description = description_of(413, headers["content-type"], body, fmt)
    assert description == f"the request body is larger than {BODY_LIMIT} bytes"


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_a_streamed_body_over_the_limit_is_refused_in_open311s_format(
    http: httpx.AsyncClient, fmt: str
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # Sent in full (the limit passes on the last chunk), so the caller is reading, not
        # writing, when the gateway answers and closes.
        yield b"description="
        for _ in range(BODY_LIMIT // 65536):
            yield b"x" * 65536
        yield b"x" * 1000

    response = await http.post(
        f"{BASE}/requests.{fmt}", content=chunks(), headers={"content-type": FORM_TYPE}
    )
    assert response.status_code == 413, response.text
    assert response.headers["x-request-id"]
    description = description_of(413, response.headers["content-type"], response.content, fmt)
    assert description == f"the request body is larger than {BODY_LIMIT} bytes"
