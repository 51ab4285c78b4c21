"""Checking an uploaded image by its content, and writing it again without its metadata.

The type is read from the bytes (never from a name or a declared type); the image must decode
in full within a pixel budget (a small file can claim a huge image); what is stored is the
pixels re-encoded with no metadata at all (EXIF can carry GPS positions, device serials and
times: personal data the city did not ask for). Re-encoding is deterministic, so the same frame
sent twice has the same bytes, and so the same SHA-256.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}


class ImageRejected(Exception):
    """The upload is not an image this service takes; ``code`` and ``reason`` say why."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CleanImage:
    data: bytes
    media_type: str
    width: int
    height: int


def clean(data: bytes, *, max_bytes: int, max_pixels: int) -> CleanImage:
    """The image in ``data``, checked and re-encoded without metadata; ImageRejected if not."""
    if not data:
        raise ImageRejected("EMPTY", "the upload is empty")
    if len(data) > max_bytes:
        raise ImageRejected("TOO_LARGE", f"the image is larger than {max_bytes} bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                kind = probe.format
                width, height = probe.size
                if kind not in FORMATS:
                    raise ImageRejected(
                        "NOT_AN_IMAGE", f"a {kind or 'file'} is not taken; send JPEG or PNG"
                    )
                if width * height > max_pixels:
                    raise ImageRejected("TOO_LARGE", f"the image has more than {max_pixels} pixels")
                probe.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                pixels = _without_metadata(image)
        except UnidentifiedImageError:
            raise ImageRejected("NOT_AN_IMAGE", "the upload is not a JPEG or PNG image") from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise ImageRejected("TOO_LARGE", "the image decompresses past the limit") from None
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageRejected("CORRUPT", f"the image does not decode: {error}") from None
    out = io.BytesIO()
    if kind == "JPEG":
        pixels.save(out, format="JPEG", quality=92, optimize=False, progressive=False)
    else:
        pixels.save(out, format="PNG", optimize=False)
    return CleanImage(out.getvalue(), FORMATS[kind], pixels.width, pixels.height)


def _without_metadata(image: Image.Image) -> Image.Image:
    """The pixels alone, in a mode the output format takes (orientation applied first, so a
    photo tagged "rotated" is stored upright once the tag is gone)."""
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(image) or image
    mode = "RGB" if upright.mode not in ("RGB", "L", "RGBA") else upright.mode
    if image.format == "JPEG" and mode == "RGBA":
        mode = "RGB"
    bare = Image.new(mode, upright.size)
    bare.paste(upright.convert(mode))
    return bare
