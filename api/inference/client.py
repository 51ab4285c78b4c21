"""The client of the serving tier (Ray Serve LLM's OpenAI-compatible API), the only place the
gateway and its workers talk to the models.

Timeouts on every call; a bounded number of retries, with backoff, when the tier is overloaded
(429, 503) or unreachable; anything else it answers is passed on as it is. A health check
(``healthy``) feeds ``/readyz`` and lets the vision worker hold its queue while the tier is down.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
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


class ServingClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float,
        retries: int = 2,
        backoff_seconds: float = 0.5,
        max_connections: int = 64,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._retries = retries
        self._backoff = backoff_seconds
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            limits=httpx.Limits(max_connections=max_connections),
        )
        self._healthy: tuple[float, bool] | None = None

    async def close(self) -> None:
        await self._http.aclose()

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/chat/completions`` (not streamed); the decoded answer."""
        response = await self._post("/v1/chat/completions", body)
        answer: dict[str, Any] = orjson.loads(response.content)
        return answer

    async def open_stream(self, body: dict[str, Any]) -> httpx.Response:
        """``POST /v1/chat/completions`` with ``stream: true``: the response, its server-sent
        events still to be read (``aiter_lines``); the caller closes it. Retried like the other
        calls, but only until the tier starts answering."""
        content = orjson.dumps(body)
        delay = self._backoff
        for attempt in range(self._retries + 1):
            request = self._http.build_request(
                "POST",
                "/v1/chat/completions",
                content=content,
                headers={"content-type": "application/json", "accept": "text/event-stream"},
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as error:
                problem = f"unreachable: {type(error).__name__}"
            else:
                if response.status_code < 400:
                    return response
                text = (await response.aread()).decode(errors="replace")
                await response.aclose()
                if response.status_code not in RETRYABLE:
                    raise ServingRefused(response.status_code, text)
                problem = f"answered {response.status_code}"
            if attempt < self._retries:
                log.warning("serving.retry", path="/v1/chat/completions", problem=problem)
                await asyncio.sleep(delay)
                delay *= 2
        self._healthy = (time.monotonic(), False)
        raise ServingUnavailable(f"the serving tier at {self.base_url} is {problem}")

    async def models(self) -> list[dict[str, Any]]:
        response = await self._send("GET", "/v1/models", None)
        data: list[dict[str, Any]] = orjson.loads(response.content).get("data", [])
        return data

    async def healthy(self, *, max_age: float = 5.0) -> bool:
        """Whether the tier answers ``/v1/models`` now (remembered for ``max_age`` seconds)."""
        now = time.monotonic()
        if self._healthy is not None and now - self._healthy[0] < max_age:
            return self._healthy[1]
        try:
            response = await self._http.get("/v1/models", timeout=2.0)
            healthy = response.status_code == 200
        except httpx.HTTPError:
            healthy = False
        self._healthy = (now, healthy)
        return healthy

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self._send("POST", path, orjson.dumps(body))

    async def _send(self, method: str, path: str, content: bytes | None) -> httpx.Response:
        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                response = await self._http.request(
                    method,
                    path,
                    content=content,
                    headers={"content-type": "application/json"} if content else None,
                )
            except httpx.TransportError as error:
                problem = f"unreachable: {type(error).__name__}"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRYABLE:
                    raise ServingRefused(response.status_code, response.text)
                problem = f"answered {response.status_code}"
            if attempt < self._retries:
                log.warning("serving.retry", path=path, problem=problem, attempt=attempt + 1)
                await asyncio.sleep(delay)
                delay *= 2
        self._healthy = (time.monotonic(), False)
        raise ServingUnavailable(f"the serving tier at {self.base_url} is {problem}")
