"""Uploaded images decoded a few at a time, within a budget of pixels for the whole process.

A decoded image takes its pixels' worth of memory, whatever its size on the wire: a 150 KB PNG
can be 40 million pixels, 160 MB for each copy its re-encoding holds. A count of decodes alone
does not bound that, so every decode takes its image's pixels (read from the header, before
anything is decoded) from one budget, and gives them back once its thread is done; a decode
whose pixels do not fit waits, first come first served (a large image is not passed over for
ever by small ones), and so does one past the count of decodes at once (each holds a thread).

Once a large image is done, the memory its decoding took is given back to the system: glibc
keeps what is freed for reuse (``malloc_trim`` hands it back), and without it a gateway that
once decoded a few large images would keep a gigabyte it no longer uses.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections import deque
from functools import cache
from typing import Any

from api.vision import images

# Images this large (and larger) are followed by a trim: below it the freed memory is small
# enough to keep for the next decode.
TRIM_PIXELS = 4_000_000


class DecodingBudget:
    """Pixels being decoded, and decodes running, at once; ``take`` waits until both fit."""

    def __init__(self, pixels: int, decodes: int) -> None:
        if pixels < 1 or decodes < 1:
            raise ValueError("a decoding budget needs at least one pixel and one decode")
        self.pixels = pixels
        self.decodes = decodes
        self.pixels_in_use = 0
        self.running = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def take(self, pixels: int) -> int:
        """Take ``pixels`` (at most the whole budget: a larger image decodes alone) and one
        decode; return what was taken, to ``give`` back."""
        pixels = min(pixels, self.pixels)
        if not self._waiting and self._fits(pixels):
            self._grant(pixels)
            return pixels
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pixels, future)
        self._waiting.append(entry)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.give(pixels)  # granted, then cancelled before it could run
            else:
                self._waiting.remove(entry)
                self._admit()  # the first in line left: those behind it may fit
            raise
        return pixels

    def give(self, pixels: int) -> None:
        self.pixels_in_use -= pixels
        self.running -= 1
        self._admit()

    def _fits(self, pixels: int) -> bool:
        return self.running < self.decodes and self.pixels_in_use + pixels <= self.pixels

    def _grant(self, pixels: int) -> None:
        self.pixels_in_use += pixels
        self.running += 1

    def _admit(self) -> None:
        while self._waiting:
            pixels, future = self._waiting[0]
            if not self._fits(pixels):
                return
            self._waiting.popleft()
            self._grant(pixels)
            future.set_result(None)


class ImageDecoder:
    """Checks and re-encodes uploaded images (``api.vision.images``) within a budget."""

    def __init__(self, budget: DecodingBudget, trim_pixels: int = TRIM_PIXELS) -> None:
        self.budget = budget
        self._trim_pixels = trim_pixels

    async def clean(self, data: bytes, *, max_bytes: int, max_pixels: int) -> images.CleanImage:
        """``images.clean``, run in a thread once the image's pixels fit in the budget;
        ImageRejected if the image is not taken (before any wait, if its header says so)."""
        header = await asyncio.to_thread(
            images.inspect, data, max_bytes=max_bytes, max_pixels=max_pixels
        )
        taken = await self.budget.take(header.pixels)
        decoding = asyncio.ensure_future(asyncio.to_thread(self._decode, data, header))

        def done(task: asyncio.Future[images.CleanImage]) -> None:
            # Given back when the thread is done, not when the caller stops waiting (a request
            # cancelled mid-decode): until then the pixels are in memory.
            self.budget.give(taken)
            if not task.cancelled():
                task.exception()  # a caller that left has no use for it: not reported

        decoding.add_done_callback(done)
        return await asyncio.shield(decoding)

    def _decode(self, data: bytes, header: images.ImageHeader) -> images.CleanImage:
        try:
            return images.decode(data, header)
        finally:
            if header.pixels >= self._trim_pixels:
                release_free_memory()


def release_free_memory() -> None:
    """Hand the memory freed in this process back to the system, where the C library can."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``; None on a C library without it (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
