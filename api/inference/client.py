"""The client of the serving tier (Ray Serve LLM's OpenAI-compatible API), the only place the
gateway and its workers talk to the models.

Timeouts on every call; a bounded number of retries, with backoff, when the tier is overloaded
(429, 503) or unreachable; anything else it answers is passed on as it is. A health check
(``healthy``) feeds ``/readyz`` and lets the vision worker hold its queue while the tier is down.

The tier answers its own callers only: every call carries the newest secret (the first line) of
the callers' secret file, read again whenever the file changes, so a rotation needs no restart.
A refusal (401) makes the client read the file once more and try again once: the tier may have
retired the old secret a moment before the file here was replaced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp  # not httpx: its connection pool held concurrent calls back (pyproject.toml)
import orjson
import structlog

log = structlog.get_logger(__name__)

RETRYABLE = {429, 502, 503, 504}


class ServingUnavailable(Exception):
    """The serving tier did not answer (or kept saying it is overloaded); try again later."""


class ServingRefused(Exception):
    """The serving tier answered the request with an error that retrying will not change."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"the serving tier answered {status}: {body[:300]}")
        self.status = status
        self.body = body


class CallerSecret:
    """The newest secret of the callers' secret file, read again when the file changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._header: dict[str, str] = {}

    def header(self, *, reread: bool = False) -> dict[str, str]:
        """``{"authorization": "Bearer …"}``, or no header when there is no usable file (the
        tier then refuses, and the refusal says why)."""
        if self.path is None:
            return {}
        try:
            info = self.path.stat()
        except OSError:
            self._remember(None, {}, "missing")
            return {}
        seen = (info.st_mtime_ns, info.st_size, info.st_ino)
        if reread or seen != self._seen:
            try:
                lines = self.path.read_text(encoding="ascii").split()
            except (OSError, UnicodeDecodeError):
                lines = []
            if lines:
                self._remember(seen, {"authorization": f"Bearer {lines[0]}"}, "read")
            else:
                self._remember(seen, {}, "unusable")
        return self._header

    def _remember(
        self, seen: tuple[int, int, int] | None, header: dict[str, str], what: str
    ) -> None:
        if header != self._header or seen != self._seen:
            log.info("serving.secret_file", path=str(self.path), state=what)
        self._seen, self._header = seen, header


class ServingStream:
    """A streamed answer (server-sent events) being read; closed by whoever opened it. Closing
    it before its end drops the connection, which stops the model."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def lines(self) -> AsyncIterator[str]:
        """Its lines, without their line ends; ``ServingUnavailable`` if the tier stops
        answering midway."""
        try:
            async for raw in self._response.content:
                yield raw.decode(errors="replace").rstrip("\r\n")
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            raise ServingUnavailable(f"the answer broke off: {type(error).__name__}") from error

    async def aclose(self) -> None:
        if not self._response.closed:
            self._response.close()


class ServingClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float,
        secret_file: Path | None,
        retries: int = 2,
        backoff_seconds: float = 0.5,
        max_connections: int = 64,
    ) -> None:
        """Made inside the event loop that uses it (the lifespan, a worker's start)."""
        self.base_url = base_url.rstrip("/")
        self._secret = CallerSecret(secret_file)
        # A streamed answer may take longer than one call's timeout in all: what bounds it is
        # the wait for each next piece (and the tokens the caller asked for).
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=min(5.0, timeout_seconds), sock_read=timeout_seconds
        )
        self._retries = retries
        self._backoff = backoff_seconds
        # Connections are kept open and reused: one opened per call would cost the tier's own
        # proxy more than the call costs the gateway.
        self._call_timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, connect=min(5.0, timeout_seconds)
        )
        self._http = aiohttp.ClientSession(
            timeout=self._call_timeout,
            connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=60),
        )
        self._healthy: tuple[float, bool] | None = None

    async def close(self) -> None:
        await self._http.close()

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/chat/completions`` (not streamed); the decoded answer."""
        content = await self._send("POST", "/v1/chat/completions", orjson.dumps(body))
        answer: dict[str, Any] = orjson.loads(content)
        return answer

    async def open_stream(self, body: dict[str, Any]) -> ServingStream:
        """``POST /v1/chat/completions`` with ``stream: true``: the answer, its server-sent
        events still to be read; the caller closes it. Retried like the other calls, but only
        until the tier starts answering."""
        content = orjson.dumps(body)
        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                response = await self._open(
                    "POST",
                    "/v1/chat/completions",
                    content,
                    {"content-type": "application/json", "accept": "text/event-stream"},
                    client_timeout=self._stream_timeout,
                )
            except (TimeoutError, aiohttp.ClientError) as error:
                problem = f"unreachable: {type(error).__name__}"
            else:
                if response.status < 400:
                    return ServingStream(response)
                text = await _text(response)
                if response.status not in RETRYABLE:
                    raise ServingRefused(response.status, text)
                problem = f"answered {response.status}"
            if attempt < self._retries:
                log.warning("serving.retry", path="/v1/chat/completions", problem=problem)
                await asyncio.sleep(delay)
                delay *= 2
        self._healthy = (time.monotonic(), False)
        raise ServingUnavailable(f"the serving tier at {self.base_url} is {problem}")

    async def models(self) -> list[dict[str, Any]]:
        content = await self._send("GET", "/v1/models", None)
        data: list[dict[str, Any]] = orjson.loads(content).get("data", [])
        return data

    async def healthy(self, *, max_age: float = 5.0) -> bool:
        """Whether the tier answers ``/v1/models`` now (remembered for ``max_age`` seconds)."""
        now = time.monotonic()
        if self._healthy is not None and now - self._healthy[0] < max_age:
            return self._healthy[1]
        try:
            async with self._http.get(
                self.base_url + "/v1/models",
                headers=self._secret.header(),
                timeout=aiohttp.ClientTimeout(total=2.0),
            ) as response:
                healthy = response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            healthy = False
        self._healthy = (now, healthy)
        return healthy

    async def _open(
        self,
        method: str,
        path: str,
        content: bytes | None,
        headers: dict[str, str],
        *,
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        """One request, with the callers' secret. A refusal of the secret (401) is tried once
        more with the file read again; a second one means this gateway holds no secret the
        tier accepts, which is an outage to every caller here (frames wait, /readyz says so),
        not an answer to pass on."""
        for reread in (False, True):
            response = await self._http.request(
                method,
                self.base_url + path,
                data=content,
                headers={**headers, **self._secret.header(reread=reread)},
                timeout=client_timeout or self._call_timeout,
            )
            if response.status != 401:
                return response
            await _text(response)
        self._healthy = (time.monotonic(), False)
        log.error(
            "serving.credential_refused",
            secret_file=str(self._secret.path),
            hint="give this process the tier's callers' secret (LIGHTHOUSE_SERVING_SECRET_FILE)",
        )
        raise ServingUnavailable(
            f"the serving tier at {self.base_url} refuses this gateway's credential"
        )

    async def _send(self, method: str, path: str, content: bytes | None) -> bytes:
        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                response = await self._open(
                    method, path, content, {"content-type": "application/json"} if content else {}
                )
                async with response:
                    if response.status < 400:
                        return await response.read()
                    text = await _text(response)
                    if response.status not in RETRYABLE:
                        raise ServingRefused(response.status, text)
                    problem = f"answered {response.status}"
            except (TimeoutError, aiohttp.ClientError) as error:
                problem = f"unreachable: {type(error).__name__}"
            if attempt < self._retries:
                log.warning("serving.retry", path=path, problem=problem, attempt=attempt + 1)
                await asyncio.sleep(delay)
                delay *= 2
        self._healthy = (time.monotonic(), False)
        raise ServingUnavailable(f"the serving tier at {self.base_url} is {problem}")


async def _text(response: aiohttp.ClientResponse) -> str:
    """An error answer's body (bounded), and the response released."""
    try:
        return (await response.content.read(64 * 1024)).decode(errors="replace")
    finally:
        response.release()
