"""The serving tier's client (api.inference.client) against a small HTTP server of the test's
own: the callers' secret it sends, and how long it waits for a streamed answer."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from api.inference.client import ServingClient, ServingUnavailable
from tests.support import free_port

SECRET, NEWER = "s" * 43, "n" * 43


class Tier:
    """Answers ``/v1/models`` to holders of ``accepted``; streams ``pieces`` lines ``gap``
    seconds apart; records the authorization it was sent."""

    def __init__(self) -> None:
        self.accepted = {SECRET}
        self.seen: list[str | None] = []
        self.pieces, self.gap = 3, 0.0

    async def models(self, request: web.Request) -> web.Response:
        sent = request.headers.get("authorization")
        self.seen.append(sent)
        if sent not in {f"Bearer {secret}" for secret in self.accepted}:
            return web.json_response({"error": {"code": "invalid_credential"}}, status=401)
        return web.json_response({"data": [{"id": "m"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for number in range(self.pieces):
            await asyncio.sleep(self.gap)
            await response.write(f"data: {number}\n".encode())
        await response.write_eof()
        return response


@pytest.fixture
async def tier() -> AsyncIterator[tuple[Tier, str]]:
    state = Tier()
    app = web.Application()
    app.router.add_get("/v1/models", state.models)
    app.router.add_post("/v1/chat/completions", state.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield state, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_the_newest_secret_is_sent_and_a_rotation_followed(
    tier: tuple[Tier, str], tmp_path: Path
) -> None:
    state, url = tier
    secret_file = tmp_path / "caller-secret"
    secret_file.write_text(f"{SECRET}\n")
    client = ServingClient(url, secret_file=secret_file, timeout_seconds=5, retries=0)
    try:
        assert await client.models() == [{"id": "m"}]
        # Rotation: the tier accepts both, the file gets the new one first, then the tier
        # retires the old one.
        state.accepted.add(NEWER)
        secret_file.write_text(f"{NEWER}\n{SECRET}\n")
        assert await client.models() == [{"id": "m"}]
        state.accepted.discard(SECRET)
        assert await client.models() == [{"id": "m"}]
        assert state.seen == [f"Bearer {SECRET}", f"Bearer {NEWER}", f"Bearer {NEWER}"]
    finally:
        await client.close()


async def test_a_refused_secret_is_read_again_once_then_reported_as_an_outage(
    tier: tuple[Tier, str], tmp_path: Path
) -> None:
    state, url = tier
    secret_file = tmp_path / "caller-secret"
    secret_file.write_text(f"{NEWER}\n")  # the tier moved on, this copy did not
    client = ServingClient(url, secret_file=secret_file, timeout_seconds=5, retries=2)
    try:
        with pytest.raises(ServingUnavailable, match="refuses this gateway's credential"):
            await client.models()
        assert state.seen == [f"Bearer {NEWER}"] * 2  # once, once more re-read: no retries
        assert not await client.healthy(max_age=0)
        # The copy catches up within the clock's tick (the file looks unchanged to a stat):
        # the refusal's re-read finds the new secret.
        state.seen.clear()
        before = secret_file.stat()
        secret_file.write_text(f"{SECRET}\n")
        os.utime(secret_file, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert await client.models() == [{"id": "m"}]
        assert state.seen == [f"Bearer {NEWER}", f"Bearer {SECRET}"]
    finally:
        await client.close()


async def test_without_a_secret_file_no_credential_is_sent(tier: tuple[Tier, str]) -> None:
    state, url = tier
    client = ServingClient(url, secret_file=Path("/nonexistent/caller-secret"), timeout_seconds=5)
    try:
        with pytest.raises(ServingUnavailable):
            await client.models()
        assert state.seen == [None, None]
    finally:
        await client.close()


async def test_a_stream_longer_than_the_call_timeout_is_read_to_its_end(
    tier: tuple[Tier, str], tmp_path: Path
) -> None:
    """What bounds a stream is the wait for its next piece, not its whole length."""
    state, url = tier
    state.pieces, state.gap = 6, 0.3  # 1.8 s in all, each piece within 0.3 s
    client = ServingClient(url, secret_file=None, timeout_seconds=1, retries=0)
    try:
        stream = await client.open_stream({"stream": True})
        lines = [line async for line in stream.lines()]
        await stream.aclose()
        assert lines == [f"data: {number}" for number in range(6)]

        state.pieces, state.gap = 2, 1.5  # a piece that does not come within the timeout
        stalled = await client.open_stream({"stream": True})
        with pytest.raises(ServingUnavailable, match="broke off"):
            [line async for line in stalled.lines()]
        await stalled.aclose()
    finally:
        await client.close()
