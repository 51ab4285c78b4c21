"""The authorization server's housekeeping (run now and then as tokens are issued): request
counts of windows long over and revocations of tokens long expired are deleted; the counts
that still limit someone and the revocations that still stop a token stay."""

from __future__ import annotations

import asyncpg
import pytest

from api.repositories.oauth import OAuthRepository
from tests.support import DatabaseUnderTest

pytestmark = pytest.mark.db


async def test_old_counts_and_expired_revocations_go_and_the_rest_stays(
    database: DatabaseUnderTest, owner: asyncpg.Connection
) -> None:
    await owner.execute(
        "INSERT INTO token_request_count (caller, window_start, requests) VALUES"
        " ('housekeeping-old', now() - interval '11 minutes', 3),"
        " ('housekeeping-recent', now() - interval '9 minutes', 4),"
        " ('housekeeping-now', date_trunc('minute', now()), 5)"
    )
    await owner.execute(
        "INSERT INTO revoked_token (jti, client_id, expires_at) VALUES"
        " ('housekeeping-expired', 'c', now() - interval '25 hours'),"
        " ('housekeeping-lately', 'c', now() - interval '23 hours'),"
        " ('housekeeping-live', 'c', now() + interval '1 hour')"
    )
    async with database.app_pool(max_size=1) as pool:  # as the gateway does it
        await OAuthRepository(pool).forget_old()
    counts = await owner.fetch(
        "SELECT caller FROM token_request_count WHERE caller LIKE 'housekeeping-%' ORDER BY 1"
    )
    revocations = await owner.fetch(
        "SELECT jti FROM revoked_token WHERE jti LIKE 'housekeeping-%' ORDER BY 1"
    )
    assert [r["caller"] for r in counts] == ["housekeeping-now", "housekeeping-recent"]
    assert [r["jti"] for r in revocations] == ["housekeeping-lately", "housekeeping-live"]
