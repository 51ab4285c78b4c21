"""An OpenAI chat-completions request, read and bounded before anything is forwarded.

Only what the licence can be checked against and what the serving tier needs passes: the
standard parameters, each checked for its type and range, the messages checked part by part
(``messages``: text, and images as data URIs, the city's models fetching nothing from the
network) and the response format bounded (``formats``). What the tier would fail on is refused
here, naming the parameter, before anything is reserved. The largest cost the request can have
is computed from the request alone: every text byte may be a token (byte-level tokenizers never
make more tokens than bytes), each message may add the chat template's tokens, each image at
most the model's largest image in tokens, and the answer at most ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from api.domain.errors import InvalidInput, TooLarge
from api.domain.licensing import Cost, Licence
from api.services.metering.formats import check_response_format
from api.services.metering.messages import check_messages

# The parameters forwarded as they are (the OpenAI chat-completions API, as vLLM serves it).
FORWARDED = frozenset(
    {
        "frequency_penalty",
        "logprobs",
        "presence_penalty",
        "response_format",
        "seed",
        "stop",
        "temperature",
        "top_logprobs",
        "top_p",
    }
)
# Read here, and forwarded in a form of our own (or not at all).
HANDLED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stream",
        "stream_options",
        "metadata",
        "user",
    }
)
GENERATION_PROMPT_TOKENS = 16
MAX_STOP = 4  # stop sequences


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    purpose: str | None
    stream: bool
    include_usage: bool  # the caller asked for the usage chunk of a stream
    max_tokens: int | None
    text_bytes: int
    messages: int
    image_bytes: tuple[int, ...]
    body: dict[str, Any]  # what is forwarded (completed by ``forwarded``)

    @property
    def images(self) -> int:
        return len(self.image_bytes)


@dataclass(frozen=True, slots=True)
class Bounds:
    """How the largest input is counted (MeteringSettings)."""

    image_tokens: int
    message_tokens: int


def parse(raw: bytes) -> ChatRequest:
    """The request in ``raw``; InvalidInput naming the parameter that is wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput("body", "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", "the request body must be a JSON object")
    unknown = sorted(set(body) - FORWARDED - HANDLED)
    if unknown:
        raise InvalidInput(unknown[0], "is not a parameter the city's models take")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput("model", "name the model (GET /v1/models lists yours)")
    messages = body.get("messages")
    counted = check_messages(messages)
    for name, check in PARAMETERS.items():
        if body.get(name) is not None:
            check(name, body[name])
    if body.get("n", 1) != 1:
        raise InvalidInput("n", "one choice per request")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidInput("stream", "must be true or false")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream or not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise InvalidInput("stream_options", "only {include_usage} with stream: true")
        include_usage = options.get("include_usage") is True
    max_tokens = _max_tokens(body)
    metadata = body.get("metadata")
    purpose: str | None = None
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
            isinstance(v, str) and len(v) <= 512 for v in metadata.values()
        ):
            raise InvalidInput("metadata", "must be an object of strings")
        purpose = metadata.get("purpose")
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 256):
        raise InvalidInput("user", "must be text of at most 256 characters")
    assert isinstance(messages, list)  # check_messages said so
    forwarded = {k: v for k, v in body.items() if k in FORWARDED and v is not None}
    forwarded["messages"] = messages
    return ChatRequest(
        model=model,
        purpose=purpose,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        text_bytes=counted.text_bytes,
        messages=len(messages),
        image_bytes=counted.image_bytes,
        body=forwarded,
    )


def check(request: ChatRequest, licence: Licence) -> int:
    """The request against the licence's limits per request; the answer's token budget."""
    if request.images > licence.max_images:
        raise InvalidInput(
            "messages", f"at most {licence.max_images} image(s) per request under this licence"
        )
    for size in request.image_bytes:
        if size > licence.max_image_bytes:
            raise TooLarge(
                "messages", f"an image of {size} bytes; this licence takes at most "
                f"{licence.max_image_bytes}"
            )  # fmt: skip
    if request.max_tokens is not None and request.max_tokens > licence.max_tokens:
        raise InvalidInput(
            "max_tokens", f"at most {licence.max_tokens} under this licence (or leave it out)"
        )
    return request.max_tokens or licence.max_tokens


def largest_cost(request: ChatRequest, max_tokens: int, bounds: Bounds) -> Cost:
    """The most the request can cost: what is reserved before it is forwarded."""
    return Cost(
        input_tokens=request.text_bytes
        + request.messages * bounds.message_tokens
        + request.images * bounds.image_tokens
        + GENERATION_PROMPT_TOKENS,
        output_tokens=max_tokens,
        images=request.images,
    )


def forwarded(request: ChatRequest, max_tokens: int) -> dict[str, Any]:
    """The body the serving tier gets: the licensed model, the answer's budget, and for a
    stream the usage the settlement needs: the usage chunk at the end, and each chunk's running
    usage, from which a stream its client leaves is charged (``streams``)."""
    body = dict(request.body, model=request.model, max_tokens=max_tokens, stream=request.stream)
    if request.stream:
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    return body


def _max_tokens(body: dict[str, Any]) -> int | None:
    values = [body[k] for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None]
    for value in values:
        if type(value) is not int or value < 1:
            raise InvalidInput("max_tokens", "must be a positive integer")
    return min(values) if values else None


def _number(low: float, high: float) -> Callable[[str, object], None]:
    def check(name: str, value: object) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise InvalidInput(name, f"must be a number from {low:g} to {high:g}")

    return check


def _integer(low: int, high: int) -> Callable[[str, object], None]:
    def check(name: str, value: object) -> None:
        if type(value) is not int or not low <= value <= high:
            raise InvalidInput(name, f"must be an integer from {low} to {high}")

    return check


def _boolean(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidInput(name, "must be true or false")


def _stop(name: str, value: object) -> None:
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or not 1 <= len(stops) <= MAX_STOP
        or not all(isinstance(stop, str) and 0 < len(stop) <= 256 for stop in stops)
    ):
        raise InvalidInput(name, f"must be text, or a list of at most {MAX_STOP} texts")


def _response_format(name: str, value: object) -> None:
    check_response_format(value)


# Each forwarded parameter's check (the OpenAI API's types and ranges), so the tier is never
# given a value it would fail on, and every value forwarded is bounded.
PARAMETERS: dict[str, Callable[[str, object], None]] = {
    "frequency_penalty": _number(-2, 2),
    "presence_penalty": _number(-2, 2),
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "seed": _integer(-(2**63), 2**63 - 1),
    "logprobs": _boolean,
    "top_logprobs": _integer(0, 20),
    "stop": _stop,
    "response_format": _response_format,
}
if set(PARAMETERS) != FORWARDED:
    raise RuntimeError("every forwarded parameter needs its check in PARAMETERS")
