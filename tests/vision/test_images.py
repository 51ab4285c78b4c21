"""Images are checked by their content and stored without their metadata."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from api.vision.images import ImageRejected, clean
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
