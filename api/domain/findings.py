"""What the vision model is asked, the shape its answer must have, and how much to trust it.

The answer's shape is fixed by the serving tier's structured outputs (a JSON schema with tight
bounds), so even a weak model stays inside it; an answer that still does not parse or validate
is an ``UnusableAnswer``, recorded, never a crash. A finding's confidence is not a number the
model writes: it is the probability the model gave to the whole category string, from the
log-probabilities of the tokens that spell it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PROMPT_VERSION = "findings-v1"
MAX_FINDINGS = 3
MAX_NOTE = 24
PROMPT = """You look at one frame from a city camera in Kaohsiung. Report what the city must fix.
Answer with JSON only: {{"findings": [{{"category": CODE, "note": SHORT NOTE}}]}}, at most {most}
findings, an empty list when there is nothing to fix. The categories:
{categories}"""


@dataclass(frozen=True, slots=True)
class Category:
    code: str
    name_en: str
    name_zh: str


def prompt_text(categories: Sequence[Category]) -> str:
    lines = "\n".join(f"- {c.code}: {c.name_en} ({c.name_zh})" for c in categories)
    return PROMPT.format(most=MAX_FINDINGS, categories=lines)


def answer_schema(codes: Sequence[str]) -> dict[str, Any]:
    """The JSON schema the answer must follow; bounded tightly (a model may take the longest
    path the grammar allows)."""
    return {
        "type": "object",
        "properties": {
            "findings": {
                "type": "array",
                "maxItems": MAX_FINDINGS,
                "items": {
                    "type": "object",
                    "properties": {
                        "category": {"type": "string", "enum": sorted(codes)},
                        "note": {"type": "string", "maxLength": MAX_NOTE},
                    },
                    "required": ["category", "note"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["findings"],
        "additionalProperties": False,
    }


class UnusableAnswer(Exception):
    """The model's answer cannot be used; ``reason`` says why (it is recorded)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Finding:
    category: str
    note: str
    confidence: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    text: str
    logprob: float


def read_answer(
    text: str, codes: Sequence[str], tokens: Sequence[TokenLogprob] | None
) -> list[Finding]:
    """The findings in an answer, each with its confidence; UnusableAnswer if the answer does
    not parse, breaks the schema's bounds, or names an unknown category."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise UnusableAnswer(f"not JSON: {error}") from None
    if not isinstance(value, dict) or set(value) != {"findings"}:
        raise UnusableAnswer('not an object with exactly "findings"')
    items = value["findings"]
    if not isinstance(items, list) or len(items) > MAX_FINDINGS:
        raise UnusableAnswer(f"findings must be a list of at most {MAX_FINDINGS}")
    known = set(codes)
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"category", "note"}:
            raise UnusableAnswer('each finding must have exactly "category" and "note"')
        category, note = item["category"], item["note"]
        if not isinstance(category, str) or category not in known:
            raise UnusableAnswer(f"unknown category {category!r}")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise UnusableAnswer(f"a note must be text of at most {MAX_NOTE} characters")
        pairs.append((category, note))
    if tokens is None:
        raise UnusableAnswer("the answer came without token log-probabilities")
    confidences = category_confidences(text, [c for c, _ in pairs], tokens)
    findings: dict[str, Finding] = {}
    for (category, note), confidence in zip(pairs, confidences, strict=True):
        # The same category twice in one frame is one finding, at its higher confidence.
        if category not in findings or findings[category].confidence < confidence:
            findings[category] = Finding(category, note, confidence)
    return list(findings.values())


def category_confidences(
    text: str, categories: Sequence[str], tokens: Sequence[TokenLogprob]
) -> list[float]:
    """The probability of each category string where it stands in ``text``: the product of the
    probabilities of the tokens that spell it (a category that shares its first token with
    another — FLOODING and FALLEN_TREE — is told apart by the rest)."""
    spans = _category_spans(text, categories)
    offsets = _token_offsets(text, tokens)
    confidences = []
    for start, end in spans:
        total = sum(
            token.logprob
            for token, (token_start, token_end) in zip(tokens, offsets, strict=True)
            if token_start < end and token_end > start
        )
        confidences.append(min(1.0, math.exp(total)))
    return confidences


def _category_spans(text: str, categories: Sequence[str]) -> list[tuple[int, int]]:
    """Where each category value stands in the answer's text, in order."""
    spans = []
    position = 0
    for category in categories:
        quoted = f'"{category}"'
        key = text.find('"category"', position)
        start = text.find(quoted, key if key >= 0 else position)
        if start < 0:
            raise UnusableAnswer(f"cannot find {category} in the answer's text")
        spans.append((start + 1, start + 1 + len(category)))
        position = start + len(quoted)
    return spans


def _token_offsets(text: str, tokens: Sequence[TokenLogprob]) -> list[tuple[int, int]]:
    """Each token's span in ``text`` (tokens spell the text in order)."""
    offsets = []
    position = 0
    for token in tokens:
        found = text.find(token.text, position) if token.text else position
        if found < 0 or found - position > 2:
            # A token the text does not show verbatim (a special token, a byte fragment): it
            # takes no characters.
            offsets.append((position, position))
            continue
        offsets.append((found, found + len(token.text)))
        position = found + len(token.text)
    return offsets


def logprob_tokens(content: Sequence[Mapping[str, Any]] | None) -> list[TokenLogprob] | None:
    """The tokens of an OpenAI-style ``choices[0].logprobs.content``."""
    if content is None:
        return None
    return [
        TokenLogprob(text=str(item.get("token", "")), logprob=float(item.get("logprob", 0.0)))
        for item in content
    ]
