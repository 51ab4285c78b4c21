"""Fixtures of the metered-inference tests."""

from __future__ import annotations

import pytest

from tests.metering.support import Licensed, licensee_with_licence
from tests.support import DatabaseUnderTest


@pytest.fixture
async def licensed(database: DatabaseUnderTest) -> Licensed:
    """A licensee with one licence and an OAuth client, made as the city makes them."""
    return await licensee_with_licence(database)
