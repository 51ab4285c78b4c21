"""An OpenAI chat-completions request, read and bounded before anything is forwarded.

Only what the licence can be checked against and what the serving tier needs passes: the
standard parameters, text and images as data URIs (the city's models fetch nothing from the
network). The largest cost the request can have is computed from the request alone: every text
byte may be a token (byte-level tokenizers never make more tokens than bytes), each message may
add the chat template's tokens, each image at most the model's largest image in tokens, and the
answer at most ``max_tokens``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from api.domain.errors import InvalidInput, TooLarge
from api.domain.licensing import Cost, Licence

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
ROLES = frozenset({"system", "developer", "user", "assistant"})
MAX_MESSAGES = 256
DATA_URI = re.compile(r"data:(image/(?:png|jpeg|webp));base64,", re.ASCII)
GENERATION_PROMPT_TOKENS = 16


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
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages", "must be a non-empty list of messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidInput("messages", f"at most {MAX_MESSAGES} messages")
    text_bytes = 0
    images: list[int] = []
    for index, message in enumerate(messages):
        text, sizes = _message(index, message)
        text_bytes += text
        images.extend(sizes)
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
    forwarded = {k: v for k, v in body.items() if k in FORWARDED}
    forwarded["messages"] = messages
    return ChatRequest(
        model=model,
        purpose=purpose,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        text_bytes=text_bytes,
        messages=len(messages),
        image_bytes=tuple(images),
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
    stream the usage chunk the settlement needs."""
    body = dict(request.body, model=request.model, max_tokens=max_tokens, stream=request.stream)
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _max_tokens(body: dict[str, Any]) -> int | None:
    values = [body[k] for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None]
    for value in values:
        if type(value) is not int or value < 1:
            raise InvalidInput("max_tokens", "must be a positive integer")
    return min(values) if values else None


def _message(index: int, message: object) -> tuple[int, list[int]]:
    """The text bytes and image sizes of one message."""
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise InvalidInput(where, "must be an object with a role and content")
    if message.get("role") not in ROLES:
        raise InvalidInput(f"{where}.role", f"must be one of {', '.join(sorted(ROLES))}")
    if set(message) - {"role", "content", "name"}:
        raise InvalidInput(where, "takes role, content and name")
    content = message.get("content")
    name = message.get("name")
    text = len(name.encode()) if isinstance(name, str) else 0
    if isinstance(content, str):
        return text + len(content.encode()), []
    if not isinstance(content, list) or not content:
        raise InvalidInput(f"{where}.content", "must be text or a non-empty list of parts")
    images: list[int] = []
    for number, part in enumerate(content):
        at = f"{where}.content[{number}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            text += len(part["text"].encode())
        elif kind == "image_url":
            images.append(_image(at, part.get("image_url")))
        else:
            raise InvalidInput(at, "a part is {type: text, text} or {type: image_url, image_url}")
    return text, images


def _image(at: str, image: object) -> int:
    """The decoded size of an image given as a data URI."""
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        raise InvalidInput(f"{at}.image_url", "must be {url: data:image/...;base64,...}")
    match = DATA_URI.match(url)
    if match is None:
        raise InvalidInput(
            f"{at}.image_url.url",
            "images are sent as data URIs (data:image/png|jpeg|webp;base64,...); the city's "
            "models fetch nothing from the network",
        )
    encoded = len(url) - match.end()
    padding = len(url) - len(url.rstrip("="))
    return max(0, encoded * 3 // 4 - padding)
