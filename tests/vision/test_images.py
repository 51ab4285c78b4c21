"""Images are checked by their content and stored without their metadata."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zlib

import pytest
from PIL import Image, ImageChops, ImageStat

from api.vision.images import STORED_MODES, ImageRejected, clean
from api.vision.store import FrameStore, parse_digest
from tests.vision.images import bomb_png, gif, photo, with_exif_gps

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 4_000_000}


def test_a_jpeg_and_a_png_are_taken_and_keep_their_type() -> None:
    jpeg = clean(photo(1), **LIMITS)
    png = clean(photo(1, kind="PNG"), **LIMITS)
    assert (jpeg.media_type, jpeg.width, jpeg.height) == ("image/jpeg", 64, 48)
    assert (png.media_type, png.width, png.height) == ("image/png", 64, 48)
    assert Image.open(io.BytesIO(jpeg.data)).format == "JPEG"
    assert Image.open(io.BytesIO(png.data)).format == "PNG"


def test_metadata_is_stripped_and_the_picture_kept_upright() -> None:
    original = with_exif_gps()
    assert b"SERIAL-12345" in original
    stored = clean(original, **LIMITS)
    assert b"SERIAL-12345" not in stored.data
    reread = Image.open(io.BytesIO(stored.data))
    assert not reread.getexif(), "no EXIF at all may remain"
    assert "exif" not in reread.info
    # The 40×20 picture was tagged "rotate 90°": it is stored rotated, the tag gone.
    assert (stored.width, stored.height) == (20, 40) == reread.size


def test_the_same_picture_is_stored_as_the_same_bytes() -> None:
    first = clean(with_exif_gps(seed=3), **LIMITS)
    second = clean(with_exif_gps(seed=3), **LIMITS)
    other = clean(with_exif_gps(seed=4), **LIMITS)
    assert first.data == second.data
    assert hashlib.sha256(first.data).digest() != hashlib.sha256(other.data).digest()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "EMPTY"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "NOT_AN_IMAGE"),
        (b"GIF89a" + b"\x00" * 20, "NOT_AN_IMAGE"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "NOT_AN_IMAGE"),
        (b"just text named photo.jpg", "NOT_AN_IMAGE"),
        (photo(2)[:400], "CORRUPT"),  # a JPEG cut short
        (photo(2, kind="PNG")[:-40], "CORRUPT"),  # a PNG without its end
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "NOT_AN_IMAGE"),  # a PNG signature, no image
    ],
    ids=[
        "empty",
        "pdf",
        "gif-header",
        "svg",
        "text",
        "truncated-jpeg",
        "truncated-png",
        "png-magic",
    ],
)
def test_what_is_not_a_whole_jpeg_or_png_is_refused_by_its_content(data: bytes, code: str) -> None:
    with pytest.raises(ImageRejected) as refused:
        clean(data, **LIMITS)
    assert refused.value.code == code, refused.value.reason


def test_a_real_gif_is_refused_as_not_taken() -> None:
    with pytest.raises(ImageRejected) as refused:
        clean(gif(), **LIMITS)
    assert refused.value.code == "NOT_AN_IMAGE"
    assert "GIF" in refused.value.reason


def test_size_is_bounded_in_bytes_and_in_pixels_before_decoding() -> None:
    with pytest.raises(ImageRejected) as too_long:
        clean(photo(5, size=(400, 400), quality=100), max_bytes=1000, max_pixels=10**9)
    assert too_long.value.code == "TOO_LARGE"
    bomb = bomb_png()
    assert len(bomb) < 100_000  # small on the wire, 400 million pixels decoded
    with pytest.raises(ImageRejected) as too_many:
        clean(bomb, **LIMITS)
    assert too_many.value.code == "TOO_LARGE"


def test_the_store_keeps_one_copy_by_content(tmp_path: object) -> None:
    from pathlib import Path

    store = FrameStore(Path(str(tmp_path)))
    data = clean(photo(7), **LIMITS).data
    digest = store.put(data, "image/jpeg")
    assert store.put(data, "image/jpeg") == digest == hashlib.sha256(data).digest()
    assert store.get(digest, "image/jpeg") == data
    files = [p for p in Path(str(tmp_path)).rglob("*") if p.is_file()]
    assert len(files) == 1, files  # no temporary file left behind
    assert parse_digest(digest.hex()) == digest
    assert parse_digest("zz" * 32) is None and parse_digest("ab") is None


def test_a_phones_mpo_is_taken_as_its_first_picture() -> None:
    """Phone cameras write MPO: a JPEG followed by a second picture (another lens, a depth map)."""
    first = gradient("RGB", (48, 32))
    second = Image.new("RGB", (16, 16), (0, 200, 0))
    out = io.BytesIO()
    first.save(out, format="MPO", save_all=True, append_images=[second], quality=95)
    data = out.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    stored = clean(data, **LIMITS)
    assert (stored.media_type, stored.width, stored.height) == ("image/jpeg", 48, 32)
    reread = Image.open(io.BytesIO(stored.data))
    assert (reread.format, getattr(reread, "n_frames", 1)) == ("JPEG", 1)
    assert mean_difference(reread, first) < 3


def gradient(mode: str, size: tuple[int, int] = (40, 30)) -> Image.Image:
    """A smooth picture in ``mode`` (what JPEG keeps well), every channel different."""
    bands = [
        Image.linear_gradient("L").resize(size),
        Image.linear_gradient("L").rotate(90).resize(size),
        Image.radial_gradient("L").resize(size),
        Image.linear_gradient("L").rotate(45).resize(size),
    ]
    return Image.merge(mode, bands[: Image.getmodebands(mode)])


def noise(mode: str, size: tuple[int, int] = (40, 30), seed: int = 1) -> Image.Image:
    """Random pixels in ``mode`` (what a lossless format must keep exactly)."""
    rng = random.Random(seed)
    if mode == "I;16":
        values = [rng.randrange(65536) for _ in range(size[0] * size[1])]
        return Image.frombytes("I;16", size, struct.pack(f"<{len(values)}H", *values))
    if mode == "P":
        image = Image.frombytes(
            "P", size, bytes(rng.randrange(16) for _ in range(size[0] * size[1]))
        )
        image.putpalette([rng.randrange(256) for _ in range(16 * 3)])
        return image
    if mode == "1":
        return noise("L", size, seed).convert("1")
    raw = bytes(rng.randrange(256) for _ in range(size[0] * size[1] * len(mode)))
    return Image.frombytes(mode, size, raw)


def encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=kind, **options)
    return out.getvalue()


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    assert (a.mode, a.size) == (b.mode, b.size)
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / len(a.getbands())


def high_bytes(image: Image.Image) -> Image.Image:
    values = struct.unpack(f"<{image.width * image.height}H", image.tobytes("raw", "I;16"))
    return Image.frombytes("L", image.size, bytes(v >> 8 for v in values))


def with_transparency(image: Image.Image, colour: object) -> bytes:
    return encoded(image, "PNG", transparency=colour)


def sixteen_bit_rgb_png(size: tuple[int, int] = (8, 4), seed: int = 3) -> bytes:
    """A 48-bit RGB PNG (Pillow writes none), built chunk by chunk."""
    rng = random.Random(seed)
    width, height = size
    rows = b"".join(
        b"\x00" + struct.pack(f">{width * 3}H", *(rng.randrange(65536) for _ in range(width * 3)))
        for _ in range(height)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# Every mode the checks take, as a PNG (kept exactly, or converted as images.py documents).
PNG_MODES = {
    "1": lambda image: image.convert("L"),
    "L": lambda image: image,
    "LA": lambda image: image,
    "I;16": high_bytes,
    "P": lambda image: image.convert("RGB"),
    "RGB": lambda image: image,
    "RGBA": lambda image: image,
}
# ...and as a JPEG (lossy: kept up to JPEG's own loss).
JPEG_MODES = {
    "L": lambda image: image,
    "RGB": lambda image: image,
    "CMYK": lambda image: image.convert("RGB"),
}


def test_every_mode_taken_is_tested() -> None:
    assert set(PNG_MODES) | set(JPEG_MODES) == set(STORED_MODES)


@pytest.mark.parametrize("mode", sorted(PNG_MODES))
def test_a_png_keeps_its_pixels_in_every_mode_taken(mode: str) -> None:
    original = noise(mode)
    data = encoded(original, "PNG")
    decoded = Image.open(io.BytesIO(data))
    assert decoded.mode == mode
    stored = clean(data, **LIMITS)
    reread = Image.open(io.BytesIO(stored.data))
    expected = PNG_MODES[mode](original)
    assert (stored.media_type, reread.format) == ("image/png", "PNG")
    assert (reread.mode, reread.size) == (expected.mode, expected.size)
    assert reread.tobytes() == expected.tobytes()


def test_a_16_bit_grey_png_keeps_its_picture() -> None:
    """A 16-bit grey gradient (a thermal or depth camera's) is stored as its 8-bit grey."""
    ramp = Image.linear_gradient("L").resize((256, 64)).transpose(Image.Transpose.ROTATE_270)
    sixteen = Image.frombytes(
        "I;16",
        ramp.size,
        struct.pack(f"<{ramp.width * ramp.height}H", *(v * 257 for v in ramp.tobytes())),
    )
    stored = clean(encoded(sixteen, "PNG"), **LIMITS)
    reread = Image.open(io.BytesIO(stored.data))
    assert reread.mode == "L" and reread.tobytes() == ramp.tobytes()


def test_a_48_bit_rgb_png_keeps_its_pixels() -> None:
    data = sixteen_bit_rgb_png()
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    stored = Image.open(io.BytesIO(clean(data, **LIMITS).data))
    assert (stored.mode, stored.tobytes()) == ("RGB", decoded.convert("RGB").tobytes())


@pytest.mark.parametrize(
    ("image", "colour", "mode"),
    [
        (noise("L"), 7, "LA"),
        (noise("RGB"), (1, 2, 3), "RGBA"),
        (noise("P"), 3, "RGBA"),
    ],
    ids=["grey", "rgb", "palette"],
)
def test_a_transparent_colour_becomes_an_alpha_channel(
    image: Image.Image, colour: object, mode: str
) -> None:
    image.putpixel((0, 0), colour)  # type: ignore[arg-type]
    data = with_transparency(image, colour)
    stored = Image.open(io.BytesIO(clean(data, **LIMITS).data))
    decoded = Image.open(io.BytesIO(data))
    assert stored.mode == mode
    assert stored.tobytes() == decoded.convert(mode).tobytes()
    assert stored.getpixel((0, 0))[-1] == 0  # type: ignore[index]


@pytest.mark.parametrize("mode", sorted(JPEG_MODES))
def test_a_jpeg_keeps_its_pixels_in_every_mode_taken(mode: str) -> None:
    data = encoded(gradient(mode), "JPEG", quality=95)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.mode == mode
    stored = clean(data, **LIMITS)
    reread = Image.open(io.BytesIO(stored.data))
    assert (stored.media_type, reread.format) == ("image/jpeg", "JPEG")
    assert mean_difference(reread, JPEG_MODES[mode](decoded)) < 3
