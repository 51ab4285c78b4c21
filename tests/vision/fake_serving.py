"""A stand-in for the serving tier's OpenAI-compatible API, for the unit and service tests of the
gateway's side (the pipeline tests use the real tier): it answers chat completions with findings
it is told to give, with token log-probabilities, and can be made to fail or go away. Streamed
answers come as vLLM sends them (a role chunk, content chunks, a finish chunk, the usage chunk
when asked, with each chunk's running usage when ``continuous_usage_stats`` is asked), and can be
made to stall at a chunk, so a test can leave at a known point.

It is served over real HTTP (uvicorn in the test's loop), so the gateway's client, its retries
and its timeouts are exercised as they are against the real tier.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support import free_port


@dataclass
class Said:
    """One finding the fake model gives, and the probability it gives its category."""

    category: str
    note: str = "seen"
    probability: float = 0.9


@dataclass
class Stall:
    """The answer stops until ``resume`` is set (or, streamed, until its caller leaves): before
    answering at all (``after_chunks`` None), or a streamed answer after that many data chunks
    (0: before any; the role chunk is the first)."""

    after_chunks: int | None
    resume: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Script:
    findings: list[Said] = field(default_factory=list)
    # An answer's text given as is (to test unusable answers); overrides findings.
    text: str | None = None
    finish_reason: str = "stop"
    # Statuses to answer, one per request, before answering normally (503, 429, 400, 404…).
    failures: list[int] = field(default_factory=list)
    delay_seconds: float = 0.0
    # Answer 200 with a body that is not JSON at all (a broken proxy, say); streamed, a chunk
    # that is not JSON after the content chunks.
    garbage: bool = False
    # The usage reported: a whole answer's (a stream's completion tokens are its chunks').
    prompt_tokens: int = 50
    completion_tokens: int = 20
    usage: bool = True  # False: no usage report at all (neither in an answer nor a stream)
    # A streamed answer: its content chunks, each carrying this many tokens.
    stream_chunks: int = 20
    tokens_per_chunk: int = 1
    # Whether ``stream_options.continuous_usage_stats`` is honoured (vLLM does).
    continuous_usage: bool = True
    stall: Stall | None = None


def answer_tokens(text: str, findings: Sequence[Said]) -> list[dict[str, Any]]:
    """The answer's text as tokens with log-probabilities: each category spelled by two tokens
    whose probabilities multiply to the finding's probability; every other token certain."""
    tokens: list[dict[str, Any]] = []
    position = 0
    for said in findings:
        start = text.find(f'"{said.category}"', position) + 1
        if start > position:
            tokens.extend(_plain(text[position:start]))
        half = max(1, len(said.category) // 2)
        share = math.log(max(said.probability, 1e-12)) / 2
        tokens.append({"token": said.category[:half], "logprob": share})
        tokens.append({"token": said.category[half:], "logprob": share})
        position = start + len(said.category)
    tokens.extend(_plain(text[position:]))
    tokens.append({"token": "</s>", "logprob": 0.0})
    return tokens


def _plain(text: str) -> list[dict[str, Any]]:
    return [{"token": text[i : i + 3], "logprob": 0.0} for i in range(0, len(text), 3)]


class FakeServing:
    """``async with FakeServing() as fake``: the fake tier at ``fake.url``."""

    def __init__(self, model: str = "lighthouse-tiny-vlm", *also: str) -> None:
        self.model = model
        self.models = (model, *also)  # all served alike (two versions of a model, say)
        self.script = Script()
        # A model's own script (two versions that answer differently); the others follow
        # ``script``.
        self.scripts: dict[str, Script] = {}
        # An image's own script, by the SHA-256 of the image sent (a stored frame's digest).
        self.by_image: dict[bytes, Script] = {}
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def app(self) -> Starlette:
        async def models(request: Request) -> Response:
            data = [{"id": model, "object": "model"} for model in self.models]
            return _json({"object": "list", "data": data})

        async def chat(request: Request) -> Response:
            body = orjson.loads(await request.body())
            self.requests.append(body)
            script = self.by_image.get(
                image_digest(body), self.scripts.get(str(body.get("model")), self.script)
            )
            if script.delay_seconds:
                await asyncio.sleep(script.delay_seconds)
            if script.stall is not None and script.stall.after_chunks is None:
                await script.stall.resume.wait()
            if script.failures:
                status = script.failures.pop(0)
                return _json({"error": {"message": f"scripted {status}"}}, status)
            if script.garbage and body.get("stream") is not True:
                return Response(b"<html>oops</html>", media_type="text/html")
            if body.get("model") not in self.models:
                return _json({"error": {"message": "no such model"}}, 404)
            if body.get("stream") is True:
                return StreamingResponse(
                    _stream(self.model, body, script), media_type="text/event-stream"
                )
            findings = [] if script.text is not None else script.findings
            text = script.text if script.text is not None else _answer(findings)
            return _json(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": script.finish_reason,
                            "logprobs": {"content": answer_tokens(text, findings)},
                        }
                    ],
                    **_usage(script, script.prompt_tokens, script.completion_tokens),
                }
            )

        return Starlette(
            routes=[
                Route("/v1/models", models),
                Route("/v1/chat/completions", chat, methods=["POST"]),
            ]
        )

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None

    async def __aenter__(self) -> FakeServing:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


def image_digest(body: dict[str, Any]) -> bytes:
    """The SHA-256 of the request's image (of nothing, if it has none)."""
    for message in body.get("messages") or []:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            url = (part.get("image_url") or {}).get("url", "") if isinstance(part, dict) else ""
            if url.startswith("data:"):
                return hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).digest()
    return hashlib.sha256(b"").digest()


def _usage(script: Script, prompt: int, completion: int) -> dict[str, Any]:
    if not script.usage:
        return {}
    total = prompt + completion
    return {
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    }


async def _stream(model: str, body: dict[str, Any], script: Script) -> AsyncIterator[bytes]:
    """A streamed answer as vLLM's OpenAI server sends it."""
    options = body.get("stream_options") or {}
    include_usage = options.get("include_usage") is True and script.usage
    running = include_usage and script.continuous_usage and options.get("continuous_usage_stats")
    sent = completion = 0

    async def chunk(choices: list[dict[str, Any]], usage: bool) -> bytes:
        nonlocal sent
        stall = script.stall
        if stall is not None and sent == stall.after_chunks:
            await stall.resume.wait()
        sent += 1
        data: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                                "created": 0, "model": model, "choices": choices}  # fmt: skip
        if usage:
            data |= _usage(script, script.prompt_tokens, completion)
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    yield await chunk(choice({"role": "assistant", "content": ""}), bool(running))
    for n in range(script.stream_chunks):
        completion += script.tokens_per_chunk
        yield await chunk(choice({"content": f"t{n} "}), bool(running))
    if script.garbage:
        yield b"data: {<html>oops</html>\n\n"
        return
    yield await chunk(choice({}, script.finish_reason), bool(running))
    if include_usage:
        yield await chunk([], True)
    yield b"data: [DONE]\n\n"


def _answer(findings: Sequence[Said]) -> str:
    items = [{"category": f.category, "note": f.note} for f in findings]
    return orjson.dumps({"findings": items}).decode()


def _json(value: object, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")
