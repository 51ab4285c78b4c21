"""Every way an admitted call can fail gives its reservation back at once.

A failure is injected at each step after admission, plain and streamed: the body for the tier
cannot be built, or cannot be encoded; the tier cannot be reached, refuses, answers something
that is not an answer, or breaks its stream off; the client leaves while the model works. Each
is answered in OpenAI's error shape (or not at all, to a client that left), charged nothing (a
stream that broke off after it had delivered tokens: those, as test_v1_charges.py has it), and
leaves nothing held: no reservation, no reserved request, no call in flight, which otherwise
would pin the licence's quota and concurrency until the lease runs out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api.services.metering import chat
from tests.metering.support import (
    HELLO_INPUT,
    MODEL,
    NOTHING_CHARGED,
    NOTHING_HELD,
    Licensed,
    access_token,
    charged,
    gateway_in_loop,
    held,
    hello,
    ledger,
    settled,
)
from tests.support import DatabaseUnderTest, InProcessGateway, free_port
from tests.vision.fake_serving import FakeServing, Stall

Injection = Callable[[FakeServing, pytest.MonkeyPatch], None]


def _unbuildable(fake: FakeServing, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> dict[str, Any]:
        raise RuntimeError("injected: the body could not be built")

    monkeypatch.setattr(chat, "forwarded", fail)


def _unencodable(fake: FakeServing, monkeypatch: pytest.MonkeyPatch) -> None:
    """A body deeper than the JSON encoder goes (what an unbounded schema once made)."""
    built = chat.forwarded

    def deep(request: chat.ChatRequest, max_tokens: int) -> dict[str, Any]:
        nested: dict[str, Any] = {}
        for _ in range(300):
            nested = {"type": "object", "properties": {"x": nested}}
        return built(request, max_tokens) | {"response_format": nested}

    monkeypatch.setattr(chat, "forwarded", deep)


def _refusing(status: int) -> Injection:
    def inject(fake: FakeServing, monkeypatch: pytest.MonkeyPatch) -> None:
        fake.script.failures = [status]

    return inject


def _garbage(fake: FakeServing, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.script.garbage = True


def _no_usage(fake: FakeServing, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.script.usage = False


FAILURES: dict[str, tuple[Injection, int]] = {
    # the injection, and the status the client gets
    "body-not-built": (_unbuildable, 500),
    "body-not-encodable": (_unencodable, 500),
    "tier-refuses": (_refusing(400), 400),
    "tier-fails": (_refusing(500), 502),
    "tier-overloaded": (_refusing(503), 503),
    "answer-not-json": (_garbage, 500),
    "answer-without-usage": (_no_usage, 503),
}


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_a_call_that_fails_after_admission_leaves_nothing_held(
    metered: InProcessGateway,
    fake_tier: FakeServing,
    database: DatabaseUnderTest,
    licensed: Licensed,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    stream: bool,
) -> None:
    inject, status = FAILURES[failure]
    token = await access_token(metered, licensed)
    inject(fake_tier, monkeypatch)
    request = {"model": MODEL, "messages": hello(), "max_tokens": 32, "stream": stream}
    async with httpx.AsyncClient(base_url=metered.base_url, timeout=30) as http:
        response = await http.post(
            "/v1/chat/completions", json=request, headers={"Authorization": f"Bearer {token}"}
        )
    if stream and failure in ("answer-not-json", "answer-without-usage"):
        # The stream had begun (200) and delivered its 20 tokens: the first is broken off with
        # an error event, the second ends without a usage report. Each is charged what it
        # delivered (the prompt as the running usage said, or as reserved without it).
        assert response.status_code == 200
        events = [line for line in response.text.splitlines() if line.startswith("data: {")]
        if failure == "answer-not-json":
            assert orjson.loads(events[-1][6:])["error"]["type"] == "server_error"
            expected = ("OK", 50, 20, 0)
        else:
            expected = ("OK", HELLO_INPUT, 20, 0)
        assert await settled(database, licensed.licence, 1) == [expected]
        return
    assert await held(database, licensed.licence) == NOTHING_HELD
    assert charged(await ledger(database, licensed.licence)) == NOTHING_CHARGED
    assert await settled(database, licensed.licence, 1) == [("FAILED", 0, 0, 0)]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
async def test_a_call_to_an_unreachable_tier_leaves_nothing_held(
    database: DatabaseUnderTest, licensed: Licensed, stream: bool, tmp_path: Path
) -> None:
    """The tier gone: nothing listens where the gateway was told it is."""
    async with gateway_in_loop(database, f"http://127.0.0.1:{free_port()}", tmp_path) as gateway:
        token = await access_token(gateway, licensed)
        request = {"model": MODEL, "messages": hello(), "stream": stream}
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
            response = await http.post(
                "/v1/chat/completions", json=request, headers={"Authorization": f"Bearer {token}"}
            )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert await held(database, licensed.licence) == NOTHING_HELD
    assert await settled(database, licensed.licence, 1) == [("FAILED", 0, 0, 0)]


async def test_a_client_that_leaves_while_the_model_works_leaves_nothing_held(
    metered: InProcessGateway,
    fake_tier: FakeServing,
    database: DatabaseUnderTest,
    licensed: Licensed,
) -> None:
    token = await access_token(metered, licensed)
    fake_tier.script.stall = Stall(after_chunks=None)  # the model does not answer
    request = {"model": MODEL, "messages": hello()}
    async with httpx.AsyncClient(base_url=metered.base_url, timeout=1) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/chat/completions", json=request,
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert await settled(database, licensed.licence, 1, seconds=10) == [("CANCELLED", 0, 0, 0)]
