"""What checking large uploaded images at once does to a gateway process's memory.

Six PNGs of 6300×6300 pixels (a few hundred KB each on the wire, 40 megapixels decoded: just under
the default LIGHTHOUSE_VISION_MAX_FRAME_PIXELS) are checked and re-encoded at once, as the
gateway checks uploads (``api.vision.decoding.ImageDecoder``, with the default settings); the
process's resident memory is sampled every 10 ms and reported before (once making the pictures
is done and its memory handed back), at its peak, and a second after the last image is done.

    .venv/bin/python bench/decoding.py
    .venv/bin/python bench/decoding.py --legacy      # as before the pixel budget: two at a time,
                                                     # memory not handed back
    .venv/bin/python bench/decoding.py --images 6 --side 6300

``--legacy`` runs ``images.clean`` two at a time under a plain semaphore, as the gateway did
before: against the old ``api/vision/images.py`` it gives the numbers the review measured.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import gc
import io
import sys
import threading
import time
from pathlib import Path

import psutil
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.settings import VisionSettings  # noqa: E402
from api.vision import images  # noqa: E402

MB = 1024 * 1024


def large_png(side: int, seed: int) -> bytes:
    """A mostly plain picture: tiny on the wire, ``side``² pixels decoded."""
    picture = Image.new("RGB", (side, side), (40, 90 + seed, 140))
    draw = ImageDraw.Draw(picture)
    for n in range(12):
        offset = (n * 517 + seed * 97) % side
        draw.line([(0, offset), (side, side - offset)], fill=(250, 200, 20), width=3)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()


class Sampler:
    """The process's resident memory, sampled in a thread of its own."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def check_all(pictures: list[bytes], settings: VisionSettings, legacy: bool) -> None:
    limits = {"max_bytes": settings.max_frame_bytes, "max_pixels": settings.max_frame_pixels}
    if legacy:
        decoding = asyncio.Semaphore(settings.max_concurrent_decodes)

        async def check(data: bytes) -> images.CleanImage:
            async with decoding:
                return await asyncio.to_thread(images.clean, data, **limits)

    else:
        from api.vision.decoding import DecodingBudget, ImageDecoder

        decoder = ImageDecoder(
            DecodingBudget(settings.decoding_budget, settings.max_concurrent_decodes)
        )

        async def check(data: bytes) -> images.CleanImage:
            return await decoder.clean(data, **limits)

    cleaned = await asyncio.gather(*(check(data) for data in pictures))
    assert all(c.width == c.height for c in cleaned)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--side", type=int, default=6300)
    parser.add_argument("--legacy", action="store_true", help="two at a time, no pixel budget")
    arguments = parser.parse_args()
    settings = VisionSettings()
    pictures = [large_png(arguments.side, seed) for seed in range(arguments.images)]
    gc.collect()
    trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim  # glibc: this bench is Linux's
    trim(0)
    sizes = ", ".join(f"{len(p) // 1024} KB" for p in pictures)
    print(f"{arguments.images} PNGs of {arguments.side}×{arguments.side} pixels ({sizes})")
    with Sampler() as sampler:
        before = sampler.rss()
        started = time.perf_counter()
        asyncio.run(check_all(pictures, settings, arguments.legacy))
        seconds = time.perf_counter() - started
        time.sleep(1.0)
        after = sampler.rss()
    how = "legacy (2 at a time)" if arguments.legacy else "pixel budget"
    print(
        f"{how}: {seconds:.1f} s; RSS before {before / MB:.0f} MB, "
        f"peak {sampler.peak / MB:.0f} MB (+{(sampler.peak - before) / MB:.0f}), "
        f"after {after / MB:.0f} MB (+{(after - before) / MB:.0f})"
    )


if __name__ == "__main__":
    main()
