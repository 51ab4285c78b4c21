"""Fixtures of the metered-inference tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.metering.support import Licensed, gateway_in_loop, licensee_with_licence
from tests.support import DatabaseUnderTest, InProcessGateway
from tests.vision.fake_serving import FakeServing


@pytest.fixture
async def licensed(database: DatabaseUnderTest) -> Licensed:
    """A licensee with one licence and an OAuth client, made as the city makes them."""
    return await licensee_with_licence(database)


@pytest.fixture
async def fake_tier() -> AsyncIterator[FakeServing]:
    """The fake serving tier (tests/vision/fake_serving.py), over real HTTP in the test's loop;
    a test scripts what it answers and reads what it was sent."""
    async with FakeServing() as fake:
        try:
            yield fake
        finally:
            stall = fake.script.stall
            if stall is not None:  # a failed test must not leave an answer waiting
                stall.resume.set()


@pytest.fixture
async def metered(
    database: DatabaseUnderTest, fake_tier: FakeServing, tmp_path: Path
) -> AsyncIterator[InProcessGateway]:
    """A gateway in the test's loop whose serving tier is ``fake_tier`` (no retries), so what a
    successful call is charged is known without the real tier, and a test can reach into the
    gateway's modules to make a step fail."""
    async with gateway_in_loop(database, fake_tier.url, tmp_path) as gateway:
        yield gateway
