"""Uploaded images are decoded within one budget of pixels for the process: concurrent decodes
never hold more than it, a large image waits its turn (and is not passed over), and the pixels
are given back only once the decoding thread is done. (The memory itself: bench/decoding.py.)"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from api.vision import images
from api.vision.decoding import DecodingBudget, ImageDecoder
from tests.vision.images import photo

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 1_000_000}
BUDGET = 10_000
SIDES = [100, 60, 50, 70, 30, 90, 40, 80, 20, 100, 10, 60]


class Watched:
    """``images.decode`` slowed down, noting the budget in use as each decode starts."""

    def __init__(self, budget: DecodingBudget, seconds: float = 0.05) -> None:
        self.budget = budget
        self.seconds = seconds
        self.seen: list[tuple[int, int]] = []  # (pixels in use, decodes running)
        self.started = threading.Event()
        self.finished = threading.Event()
        self._decode = images.decode

    def __call__(self, data: bytes, header: images.ImageHeader) -> images.CleanImage:
        self.seen.append((self.budget.pixels_in_use, self.budget.running))
        self.started.set()
        time.sleep(self.seconds)
        try:
            return self._decode(data, header)
        finally:
            self.finished.set()


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ImageDecoder, Watched]]:
    budget = DecodingBudget(BUDGET, decodes=3)
    watch = Watched(budget)
    monkeypatch.setattr(images, "decode", watch)
    yield ImageDecoder(budget), watch


async def test_concurrent_decodes_never_hold_more_pixels_than_the_budget(
    watched: tuple[ImageDecoder, Watched],
) -> None:
    decoder, watch = watched
    pictures = [photo(n, size=(side, side), kind="PNG") for n, side in enumerate(SIDES)]
    cleaned = await asyncio.gather(*(decoder.clean(p, **LIMITS) for p in pictures))
    assert [c.width for c in cleaned] == SIDES
    assert len(watch.seen) == len(SIDES)
    assert max(pixels for pixels, _ in watch.seen) <= BUDGET
    assert max(running for _, running in watch.seen) <= 3
    # Not one at a time: images that fit together decoded together.
    assert max(running for _, running in watch.seen) >= 2
    assert (decoder.budget.pixels_in_use, decoder.budget.running) == (0, 0)


def flat_png(width: int, height: int) -> bytes:
    """A PNG of one colour: its header is all that counts here, and it is made at once (a
    photo-like one of 4 megapixels takes seconds to draw)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 90)).save(out, format="PNG")
    return out.getvalue()


async def test_an_image_refused_by_its_header_takes_nothing(
    watched: tuple[ImageDecoder, Watched],
) -> None:
    decoder, watch = watched
    with pytest.raises(images.ImageRejected):
        await decoder.clean(flat_png(2000, 2000), **LIMITS)  # 4 megapixels
    assert watch.seen == [] and decoder.budget.pixels_in_use == 0


async def test_a_caller_that_leaves_mid_decode_gives_the_pixels_back_once_the_thread_is_done(
    watched: tuple[ImageDecoder, Watched],
) -> None:
    decoder, watch = watched
    watch.seconds = 0.5
    call = asyncio.create_task(decoder.clean(photo(2, size=(80, 80), kind="PNG"), **LIMITS))
    assert await asyncio.to_thread(watch.started.wait, 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert decoder.budget.pixels_in_use == 6_400, "given back while still decoding"
    await asyncio.to_thread(watch.finished.wait, 5)
    await asyncio.sleep(0.05)
    assert (decoder.budget.pixels_in_use, decoder.budget.running) == (0, 0)


async def test_a_large_image_waits_its_turn_and_is_not_passed_over() -> None:
    budget = DecodingBudget(10_000, decodes=8)
    order: list[str] = []

    async def decode(name: str, pixels: int) -> int:
        taken = await budget.take(pixels)
        order.append(name)
        return taken

    first = await budget.take(6_000)
    large = asyncio.create_task(decode("large", 8_000))
    await asyncio.sleep(0.01)
    small = asyncio.create_task(decode("small", 1_000))  # it would fit; it is behind the large
    await asyncio.sleep(0.01)
    assert order == [] and budget.pixels_in_use == 6_000
    budget.give(first)
    await asyncio.gather(large, small)
    assert order == ["large", "small"]
    assert budget.pixels_in_use == 9_000


async def test_an_image_larger_than_the_budget_decodes_alone() -> None:
    budget = DecodingBudget(10_000, decodes=8)
    small = await budget.take(100)
    huge = asyncio.create_task(budget.take(50_000))
    await asyncio.sleep(0.01)
    assert not huge.done()
    budget.give(small)
    assert await huge == 10_000 and budget.pixels_in_use == 10_000


async def test_a_wait_given_up_lets_those_behind_it_in() -> None:
    budget = DecodingBudget(10_000, decodes=8)
    await budget.take(6_000)
    large = asyncio.create_task(budget.take(8_000))
    await asyncio.sleep(0.01)
    small = asyncio.create_task(budget.take(1_000))
    await asyncio.sleep(0.01)
    assert not small.done()
    large.cancel()
    assert await small == 1_000
    assert budget.pixels_in_use == 7_000 and budget.running == 2
