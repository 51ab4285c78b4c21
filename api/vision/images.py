"""Checking an uploaded image by its content, and writing it again without its metadata.

The type is read from the bytes (never from a name or a declared type); the image must decode
in full within a pixel limit (a small file can claim a huge image); what is stored is the
pixels re-encoded with no metadata at all (EXIF can carry GPS positions, device serials and
times: personal data the city did not ask for). Re-encoding is deterministic, so the same frame
sent twice has the same bytes, and so the same SHA-256.

A JPEG is stored as a JPEG, a PNG as a PNG. A phone's MPO (a JPEG followed by more pictures: a
second lens, a depth map) is a JPEG whose first picture is taken. The pixels are kept as they
are in every mode the formats share with the models (grey, grey with alpha, RGB, RGBA); the
others are converted once, the same way each time (``STORED_MODES``):

- black and white (1 bit) becomes grey, black 0 and white 255;
- 16-bit grey becomes 8-bit grey, each value's high byte (``value >> 8``; a transparent
  value is not kept);
- a palette becomes RGB, or RGBA when one of its colours is transparent;
- grey or RGB with a transparent colour (PNG's tRNS) becomes grey with alpha or RGBA, that
  colour's pixels transparent;
- a JPEG's CMYK becomes RGB (as Pillow converts it, Adobe's inverted CMYK included).

Any other mode is refused (NOT_AN_IMAGE). JPEG's re-encoding is lossy (quality 92); PNG's is not.
Orientation is applied first: a photo tagged "rotated" is stored upright once the tag is gone.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# The formats taken, by Pillow's name, and the one each is stored in.
STORED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG"}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
# Each mode a JPEG or PNG decodes to, and the mode its pixels are stored in (module docstring).
STORED_MODES = {
    "1": "L",
    "L": "L",
    "LA": "LA",
    "I;16": "L",
    "P": "RGB",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "CMYK": "RGB",
}
# The mode with an alpha channel that a transparent colour (PNG's tRNS) turns a mode into.
WITH_ALPHA = {"1": "LA", "L": "LA", "P": "RGBA", "RGB": "RGBA"}


class ImageRejected(Exception):
    """The upload is not an image this service takes; ``code`` and ``reason`` say why."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What an image says it is, read from its header: nothing of it decoded yet."""

    kind: str  # the format it is stored in: JPEG or PNG
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True, slots=True)
class CleanImage:
    data: bytes
    media_type: str
    width: int
    height: int
    sha256: bytes  # of ``data``: a frame's key


def clean(data: bytes, *, max_bytes: int, max_pixels: int) -> CleanImage:
    """The image in ``data``, checked and re-encoded without metadata; ImageRejected if not."""
    return decode(data, inspect(data, max_bytes=max_bytes, max_pixels=max_pixels))


def inspect(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageHeader:
    """The image's header, checked (type, mode, size within the limits, chunks intact) without
    decoding its pixels; ImageRejected if it is not an image this service takes."""
    if not data:
        raise ImageRejected("EMPTY", "the upload is empty")
    if len(data) > max_bytes:
        raise ImageRejected("TOO_LARGE", f"the image is larger than {max_bytes} bytes")
    with _rejections(), Image.open(io.BytesIO(data)) as probe:
        kind = STORED_FORMATS.get(probe.format or "")
        if kind is None:
            raise ImageRejected(
                "NOT_AN_IMAGE", f"a {probe.format or 'file'} is not taken; send JPEG or PNG"
            )
        width, height = probe.size
        if width * height > max_pixels:
            raise ImageRejected("TOO_LARGE", f"the image has more than {max_pixels} pixels")
        if probe.mode not in STORED_MODES:
            raise ImageRejected("NOT_AN_IMAGE", f"a {kind} in mode {probe.mode} is not taken")
        probe.verify()
    return ImageHeader(kind, width, height)


def decode(data: bytes, header: ImageHeader) -> CleanImage:
    """Decode the image ``inspect`` read the header of, and encode its pixels alone again; each
    step lets go of the copy of the pixels before it (a 40-megapixel image is 160 MB a copy)."""
    with _rejections(), Image.open(io.BytesIO(data)) as image:
        image.load()  # an MPO's first picture
        ImageOps.exif_transpose(image, in_place=True)
        pixels = _stored_pixels(image)
        if pixels is not image:
            image.close()  # converted: its decoded pixels are not needed any more
        # A new image, given the pixels alone: nothing of the original (EXIF, ICC profile,
        # comments, text chunks) can travel on with it.
        bare = Image.new(pixels.mode, pixels.size)
        bare.paste(pixels)
        pixels.close()
    out = io.BytesIO()
    if header.kind == "JPEG":
        bare.save(out, format="JPEG", quality=92, optimize=False, progressive=False)
    else:
        bare.save(out, format="PNG", optimize=False)
    width, height = bare.size
    bare.close()
    data = out.getvalue()
    return CleanImage(data, MEDIA_TYPES[header.kind], width, height, hashlib.sha256(data).digest())


def _stored_pixels(image: Image.Image) -> Image.Image:
    """``image``'s pixels in the mode they are stored in: ``image`` itself, or a converted copy."""
    mode = image.mode
    if mode == "I;16":
        # Little-endian 16-bit values: every second byte is a value's high byte.
        return Image.frombytes("L", image.size, image.tobytes("raw", "I;16")[1::2])
    target = STORED_MODES[mode]
    if "transparency" in image.info and mode in WITH_ALPHA:
        target = WITH_ALPHA[mode]
    return image.convert(target) if target != mode else image


@contextmanager
def _rejections() -> Iterator[None]:
    """Pillow's failures, as the refusals they mean."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except UnidentifiedImageError:
            raise ImageRejected("NOT_AN_IMAGE", "the upload is not a JPEG or PNG image") from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise ImageRejected("TOO_LARGE", "the image decompresses past the limit") from None
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageRejected("CORRUPT", f"the image does not decode: {error}") from None
