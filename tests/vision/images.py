"""Images for the tests, made on the spot (Pillow): each distinct by its pixels."""

from __future__ import annotations

import io
import random

from PIL import Image


def photo(
    seed: int = 0, size: tuple[int, int] = (64, 48), kind: str = "JPEG", **save: object
) -> bytes:
    """A small noisy picture, different for each seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", size)
    image.putdata(
        [
            (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            for _ in range(size[0] * size[1])
        ]
    )
    out = io.BytesIO()
    image.save(out, format=kind, **save)
    return out.getvalue()


def with_exif_gps(seed: int = 0) -> bytes:
    """A JPEG carrying EXIF: a GPS position, a camera serial, and 'rotate 90°'."""
    rng = random.Random(seed)
    image = Image.new("RGB", (40, 20))
    image.putdata([(rng.randrange(256), 0, 0) for _ in range(40 * 20)])
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    exif[0xA431] = "SERIAL-12345"  # BodySerialNumber
    gps = {1: "N", 2: (22.0, 37.0, 30.0), 3: "E", 4: (120.0, 18.0, 0.0)}
    exif[0x8825] = gps
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG that claims a huge image (one colour compresses to almost nothing)."""
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(out, format="GIF")
    return out.getvalue()
