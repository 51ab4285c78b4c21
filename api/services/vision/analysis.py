"""Asking the served vision model about one image: the request (a versioned prompt, the image,
the answer's JSON schema for the engine's structured outputs, token log-probabilities), and what
came back, read into findings or an unusable answer with its reason."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from api.domain import findings
from api.domain.findings import Category, Finding, UnusableAnswer
from api.inference.client import ServingClient, ServingRefused, ServingUnavailable

# A model the tier does not (yet) serve answers 404: a deployment under way, not a bad frame.
NOT_SERVED = {404}


class Outcome(StrEnum):
    FINDINGS = "FINDINGS"
    NOTHING = "NOTHING"
    UNUSABLE = "UNUSABLE"


@dataclass(frozen=True, slots=True)
class Prompt:
    """The question asked of every frame, named by its version: the prompt's own version and a
    fingerprint of its text and schema (the categories come from the routing table)."""

    version: str
    text: str
    schema: dict[str, Any]
    codes: tuple[str, ...]

    @classmethod
    def over(cls, categories: Sequence[Category]) -> Prompt:
        codes = tuple(sorted(c.code for c in categories))
        text = findings.prompt_text(sorted(categories, key=lambda c: c.code))
        schema = findings.answer_schema(codes)
        fingerprint = hashlib.sha256(
            (text + json.dumps(schema, sort_keys=True)).encode()
        ).hexdigest()[:12]
        return cls(f"{findings.PROMPT_VERSION}-{fingerprint}", text, schema, codes)


@dataclass(frozen=True, slots=True)
class Analysis:
    outcome: Outcome
    findings: tuple[Finding, ...]
    failure: str | None
    raw_answer: str
    latency_ms: int


class VisionModel:
    """One served model, by name and version, behind the serving client."""

    def __init__(
        self, client: ServingClient, name: str, version: str, max_answer_tokens: int = 300
    ) -> None:
        self.client = client
        self.name = name
        self.version = version
        self.max_answer_tokens = max_answer_tokens

    def named(self, name: str, version: str) -> VisionModel:
        """Another served model (or version) through the same client."""
        if (name, version) == (self.name, self.version):
            return self
        return VisionModel(self.client, name, version, self.max_answer_tokens)

    def request(self, prompt: Prompt, image: bytes, media_type: str) -> dict[str, Any]:
        """The OpenAI chat request: deterministic (temperature 0), the answer's shape fixed by
        the schema, with each answer token's log-probability."""
        data = base64.b64encode(image).decode()
        return {
            "model": self.name,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:{media_type};base64,{data}"},
                        },
                        {"type": "text", "text": prompt.text},
                    ],
                }
            ],
            "temperature": 0,
            "max_tokens": self.max_answer_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "findings", "schema": prompt.schema, "strict": True},
            },
            "logprobs": True,
            "top_logprobs": 1,
        }

    async def analyse(self, prompt: Prompt, image: bytes, media_type: str) -> Analysis:
        """The model's findings in ``image``. ``ServingUnavailable`` when the tier is down or not
        serving this model yet (the frame waits); any other refusal, or an answer that does not
        hold, is an UNUSABLE analysis with its reason."""
        started = time.perf_counter()
        try:
            answer = await self.client.chat(self.request(prompt, image, media_type))
        except ServingRefused as refused:
            if refused.status in NOT_SERVED:
                raise ServingUnavailable(
                    f"the serving tier does not serve {self.name}: {refused.body[:200]}"
                ) from None
            return _unusable(f"the serving tier refused the frame: {refused}", "", started)
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] or ""
            logprobs = choice.get("logprobs") or {}
        except (KeyError, IndexError, TypeError):
            raw = json.dumps(answer)[:65536]
            return _unusable("the answer has no choices[0].message.content", raw, started)
        if choice.get("finish_reason") == "length":
            usage = answer.get("usage") or {}
            written = usage.get("completion_tokens", "?")
            return _unusable(
                f"the answer was cut short after {written} tokens (at most "
                f"{self.max_answer_tokens} asked; the model's context holds "
                f"{usage.get('prompt_tokens', '?')} of the prompt)",
                text,
                started,
            )
        try:
            found = findings.read_answer(
                text, prompt.codes, findings.logprob_tokens(logprobs.get("content"))
            )
        except UnusableAnswer as unusable:
            return _unusable(unusable.reason, text, started)
        return Analysis(
            outcome=Outcome.FINDINGS if found else Outcome.NOTHING,
            findings=tuple(found),
            failure=None,
            raw_answer=text,
            latency_ms=_elapsed(started),
        )


def _unusable(reason: str, raw: str, started: float) -> Analysis:
    return Analysis(Outcome.UNUSABLE, (), reason[:2000], raw, _elapsed(started))


def _elapsed(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
