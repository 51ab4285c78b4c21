"""A chat request's messages, checked part by part before anything is forwarded.

The serving tier is given only what it takes: each message a role, its content (text, or a list
of parts: text, and for the user's messages images as data URIs, the city's models fetching
nothing from the network) and optionally a name; an image's ``detail`` one of auto, low, high.
Anything else is refused here with the path of the field (``messages[0].content[1].image_url
.detail``), rather than failing in the tier. Counted on the way: each message's text bytes and
each image's size, from which the request's largest cost is reserved.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from api.domain.errors import InvalidInput

MAX_MESSAGES = 256
MAX_PARTS = 256  # content parts in one message
# Which parts each role's content may hold (the OpenAI API's rule: images come from the user).
PARTS = {
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "user": frozenset({"text", "image_url"}),
    "assistant": frozenset({"text"}),
}
MESSAGE_FIELDS = frozenset({"role", "content", "name"})
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
DETAILS = ("auto", "low", "high")
DATA_URI = re.compile(r"data:(image/(?:png|jpeg|webp));base64,", re.ASCII)
# What each image type's bytes begin with; a data URI whose bytes do not is not that image.
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/webp": (b"RIFF",),  # then four bytes of length, then WEBP: checked below
}


@dataclass(frozen=True, slots=True)
class Counted:
    """What the messages hold, for the largest cost."""

    text_bytes: int
    image_bytes: tuple[int, ...]


def check_messages(messages: object) -> Counted:
    """``messages`` checked field by field; InvalidInput naming the first that is wrong."""
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages", "must be a non-empty list of messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidInput("messages", f"at most {MAX_MESSAGES} messages")
    text = 0
    images: list[int] = []
    for index, message in enumerate(messages):
        text_bytes, sizes = _message(f"messages[{index}]", message)
        text += text_bytes
        images.extend(sizes)
    return Counted(text, tuple(images))


def _message(where: str, message: object) -> tuple[int, list[int]]:
    """The text bytes and image sizes of one message."""
    if not isinstance(message, dict):
        raise InvalidInput(where, "must be an object with a role and content")
    role = message.get("role")
    if not isinstance(role, str) or role not in PARTS:
        raise InvalidInput(f"{where}.role", f"must be one of {', '.join(sorted(PARTS))}")
    for field in message:
        if field not in MESSAGE_FIELDS:
            raise InvalidInput(f"{where}.{field}", "a message takes role, content and name")
    text = 0
    if "name" in message:
        name = message["name"]
        if not isinstance(name, str) or NAME.fullmatch(name) is None:
            raise InvalidInput(f"{where}.name", "must be 1 to 64 letters, digits, _ or -")
        text += len(name)
    content = message.get("content")
    if isinstance(content, str):
        return text + len(content.encode()), []
    if not isinstance(content, list) or not content:
        raise InvalidInput(f"{where}.content", "must be text or a non-empty list of parts")
    if len(content) > MAX_PARTS:
        raise InvalidInput(f"{where}.content", f"at most {MAX_PARTS} parts")
    images: list[int] = []
    allowed = PARTS[role]
    for number, part in enumerate(content):
        at = f"{where}.content[{number}]"
        if not isinstance(part, dict):
            raise InvalidInput(at, "a part is an object with a type")
        kind = part.get("type")
        if not isinstance(kind, str) or kind not in allowed:
            kinds = " or ".join(sorted(allowed))
            raise InvalidInput(f"{at}.type", f"a {role} message's parts are {kinds}")
        for field in part:
            if field not in ("type", kind):
                raise InvalidInput(f"{at}.{field}", f"a {kind} part takes type and {kind}")
        if kind == "text":
            value = part.get("text")
            if not isinstance(value, str):
                raise InvalidInput(f"{at}.text", "must be text")
            text += len(value.encode())
        else:
            images.append(_image(f"{at}.image_url", part.get("image_url")))
    return text, images


def _image(at: str, image: object) -> int:
    """The size of an image given as a data URI, checked to be the image it says it is."""
    if not isinstance(image, dict) or "url" not in image:
        raise InvalidInput(at, "must be {url: data:image/...;base64,..., detail?}")
    for field in image:
        if field not in ("url", "detail"):
            raise InvalidInput(f"{at}.{field}", "an image takes url and detail")
    if "detail" in image and image["detail"] not in DETAILS:
        raise InvalidInput(f"{at}.detail", f"must be one of {', '.join(DETAILS)}")
    url = image["url"]
    match = DATA_URI.match(url) if isinstance(url, str) else None
    if match is None:
        raise InvalidInput(
            f"{at}.url",
            "images are sent as data URIs (data:image/png|jpeg|webp;base64,...); the city's "
            "models fetch nothing from the network",
        )
    assert isinstance(url, str)
    try:
        data = binascii.a2b_base64(url[match.end() :], strict_mode=True)
    except binascii.Error:
        raise InvalidInput(f"{at}.url", "the image's base64 is not valid") from None
    media = match.group(1)
    if not data.startswith(SIGNATURES[media]) or (media == "image/webp" and data[8:12] != b"WEBP"):
        raise InvalidInput(f"{at}.url", f"the data is not a {media.removeprefix('image/')} image")
    return len(data)
