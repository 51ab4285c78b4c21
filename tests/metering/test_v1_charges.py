"""What a metered call is charged, against the fake serving tier (tests/vision/fake_serving.py),
so it runs without the real one (test_v1_with_the_model.py checks the same against it).

A call that succeeds is charged the usage the model reports, never more than was reserved, with
its usage record saying the same as the ledger. A stream its client leaves is charged what was
produced for it: the prompt and the tokens delivered, counted as they are relayed.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.metering.support import (
    HELLO_INPUT,
    MODEL,
    NOTHING_HELD,
    Licensed,
    access_token,
    held,
    hello,
    ledger,
    png_uri,
    records,
    sdk,
    settled,
)
from tests.support import DatabaseUnderTest, InProcessGateway
from tests.vision.fake_serving import FakeServing, Stall


async def test_an_answer_is_charged_what_the_model_reports(
    metered: InProcessGateway,
    fake_tier: FakeServing,
    database: DatabaseUnderTest,
    licensed: Licensed,
) -> None:
    client = sdk(metered, await access_token(metered, licensed))
    fake_tier.script.prompt_tokens, fake_tier.script.completion_tokens = 37, 11
    answer = await client.chat.completions.create(model=MODEL, messages=hello(), max_tokens=32)
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (37, 11)
    fake_tier.script.prompt_tokens, fake_tier.script.completion_tokens = 41, 9
    image: Any = [{"role": "user", "content": [
        {"type": "text", "text": "What is parked here?"},
        {"type": "image_url", "image_url": {"url": png_uri(), "detail": "low"}},
    ]}]  # fmt: skip
    await client.chat.completions.create(model=MODEL, messages=image, max_tokens=32)
    assert await ledger(database, licensed.licence) == {
        "used_requests": 2,
        "used_input_tokens": 37 + 41,
        "used_output_tokens": 11 + 9,
        "used_images": 1,
        "reserved_requests": 0,
        "records_ok": 2,
        "records_not_charged": 0,
        "records_input_tokens": 37 + 41,
        "records_output_tokens": 11 + 9,
        "records_images": 1,
    }


async def test_a_stream_is_charged_what_its_usage_chunk_reports(
    metered: InProcessGateway,
    fake_tier: FakeServing,
    database: DatabaseUnderTest,
    licensed: Licensed,
) -> None:
    client = sdk(metered, await access_token(metered, licensed))
    # Seven chunks of two tokens each: the usage chunk, not a count of chunks, is charged.
    fake_tier.script.prompt_tokens, fake_tier.script.stream_chunks = 43, 7
    fake_tier.script.tokens_per_chunk = 2
    stream = await client.chat.completions.create(
        model=MODEL, messages=hello(), max_tokens=32, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens) == (43, 14)
    # The running usage the gateway asks the tier for is not passed on.
    assert all(chunk.usage is None for chunk in chunks[:-1])
    plain = await client.chat.completions.create(
        model=MODEL, messages=hello(), max_tokens=32, stream=True
    )
    assert all([chunk.usage is None async for chunk in plain])
    assert await ledger(database, licensed.licence) == {
        "used_requests": 2,
        "used_input_tokens": 2 * 43,
        "used_output_tokens": 2 * 14,
        "used_images": 0,
        "reserved_requests": 0,
        "records_ok": 2,
        "records_not_charged": 0,
        "records_input_tokens": 2 * 43,
        "records_output_tokens": 2 * 14,
        "records_images": 0,
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_a_report_over_the_reservation_is_charged_the_reservation(
    metered: InProcessGateway,
    fake_tier: FakeServing,
    database: DatabaseUnderTest,
    licensed: Licensed,
    stream: bool,
) -> None:
    client = sdk(metered, await access_token(metered, licensed))
    fake_tier.script.prompt_tokens = fake_tier.script.completion_tokens = 10_000
    fake_tier.script.stream_chunks = 40
    if stream:
        [_ async for _ in await client.chat.completions.create(
            model=MODEL, messages=hello(), max_tokens=8, stream=True)]  # fmt: skip
    else:
        await client.chat.completions.create(model=MODEL, messages=hello(), max_tokens=8)
    assert await records(database, licensed.licence) == [("OK", HELLO_INPUT, 8, 0)]
    state = await ledger(database, licensed.licence)
    assert (state["used_input_tokens"], state["used_output_tokens"]) == (HELLO_INPUT, 8)


async def _stream_and_leave(
    gateway: InProcessGateway, token: str, leave: str, chunks: int = 0
) -> list[dict[str, Any]]:
    """A stream read as raw server-sent events and left: ``after-chunks`` once ``chunks``
    content chunks arrived, ``after-finish`` once the finish reason arrived, ``at-once`` as soon
    as the answer's headers arrived. The chunks it read."""
    read: list[dict[str, Any]] = []
    request = {"model": MODEL, "messages": hello(), "max_tokens": 64, "stream": True}
    async with (
        httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http,
        http.stream("POST", "/v1/chat/completions", json=request,
                    headers={"Authorization": f"Bearer {token}"}) as response,
    ):  # fmt: skip
        assert response.status_code == 200
        if leave == "at-once":
            return read
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = orjson.loads(line[6:])
            read.append(chunk)
            choices = chunk["choices"]
            content = sum(
                1 for c in read if c["choices"] and c["choices"][0]["delta"].get("content")
            )
            if leave == "after-chunks" and content == chunks:
                return read
            if leave == "after-finish" and choices and choices[0]["finish_reason"]:
                return read
    raise AssertionError(f"the stream ended before the client left ({leave})")


@pytest.mark.parametrize("continuous", [True, False], ids=["running-usage", "counted"])
async def test_a_stream_left_midway_is_charged_its_prompt_and_the_tokens_delivered(
    metered: InProcessGateway,
    fake_tier: FakeServing,
    database: DatabaseUnderTest,
    licensed: Licensed,
    continuous: bool,
) -> None:
    """Five streams, each left after five content chunks of a long answer. The gateway asks
    the tier for each chunk's running usage; a tier that does not report it has its content
    chunks counted, a token each, and the prompt charged at what was reserved for it."""
    token = await access_token(metered, licensed)
    script = fake_tier.script
    script.prompt_tokens, script.stream_chunks, script.continuous_usage = 40, 60, continuous
    for _ in range(5):
        # The tier stops after the role chunk and five content chunks: the gateway has relayed
        # exactly those when the client leaves.
        script.stall = Stall(after_chunks=1 + 5)
        read = await _stream_and_leave(metered, token, "after-chunks", 5)
        assert all("usage" not in chunk for chunk in read)
    prompt = 40 if continuous else HELLO_INPUT
    assert await settled(database, licensed.licence, 5) == [("OK", prompt, 5, 0)] * 5
    forwarded = fake_tier.requests[-1]["stream_options"]
    assert forwarded == {"include_usage": True, "continuous_usage_stats": True}


async def test_a_stream_read_to_its_finish_and_left_before_the_usage_is_charged_in_full(
    metered: InProcessGateway,
    fake_tier: FakeServing,
    database: DatabaseUnderTest,
    licensed: Licensed,
) -> None:
    """A client that reads to the finish reason and closes before the usage chunk: the tier
    held back (the answer is whole, the usage chunk not yet read), then racing it."""
    token = await access_token(metered, licensed)
    script = fake_tier.script
    script.prompt_tokens, script.stream_chunks = 45, 12
    for _ in range(3):
        script.stall = Stall(after_chunks=1 + 12 + 1)  # role, content, finish: then the usage
        await _stream_and_leave(metered, token, "after-finish")
    script.stall = None
    for _ in range(10):
        await _stream_and_leave(metered, token, "after-finish")
    assert await settled(database, licensed.licence, 13) == [("OK", 45, 12, 0)] * 13


async def test_a_stream_left_before_its_first_chunk_is_charged_nothing(
    metered: InProcessGateway,
    fake_tier: FakeServing,
    database: DatabaseUnderTest,
    licensed: Licensed,
) -> None:
    """Left once the answer had begun (headers, no chunk yet), and left while the tier had not
    answered at all: nothing was delivered, nothing is charged, and the reservation is given
    back at once, not when the tier answers or the lease runs out."""
    token = await access_token(metered, licensed)
    fake_tier.script.stall = Stall(after_chunks=0)
    assert await _stream_and_leave(metered, token, "at-once") == []
    assert await settled(database, licensed.licence, 1) == [("CANCELLED", 0, 0, 0)]
    fake_tier.script.stall = Stall(after_chunks=None)  # the tier does not answer
    request = {"model": MODEL, "messages": hello(), "stream": True}
    async with httpx.AsyncClient(base_url=metered.base_url, timeout=1) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/chat/completions", json=request,
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert await settled(database, licensed.licence, 2, seconds=10) == [("CANCELLED", 0, 0, 0)] * 2
    assert await held(database, licensed.licence) == NOTHING_HELD
