"""OAuth clients, signing keys, revoked tokens and token-endpoint rate limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from api.db.errors import is_unique_violation
from api.db.literals import call
from api.db.unit_of_work import UnitOfWork
from api.domain.errors import InvalidInput

CLIENT = """
SELECT c.client_id, c.name, c.secret_hash, c.kind, c.bureau_id, b.code AS bureau_code, c.roles,
       c.scopes, c.disabled_at, c.licensee_id,
       CASE WHEN c.previous_secret_until > now() THEN c.previous_secret_hash END
           AS previous_secret_hash
FROM oauth_client c LEFT JOIN bureau b ON b.id = c.bureau_id
WHERE c.client_id = $1
"""
CLIENTS = CLIENT.replace("WHERE c.client_id = $1", "ORDER BY c.client_id")
INSERT_CLIENT = """
INSERT INTO oauth_client (client_id, name, secret_hash, kind, bureau_id, roles, scopes, licensee_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
ROTATE_SECRET = """
UPDATE oauth_client
SET previous_secret_hash = secret_hash, previous_secret_until = now() + $3, secret_hash = $2
WHERE client_id = $1 AND disabled_at IS NULL
"""
DISABLE_CLIENT = (
    "UPDATE oauth_client SET disabled_at = now() WHERE client_id = $1 AND disabled_at IS NULL"
)
PUBLISHED_KEYS = """
SELECT kid, algorithm, public_jwk, private_jwk_encrypted, activates_at, retires_at, expires_at
FROM signing_key WHERE expires_at IS NULL OR expires_at > now() ORDER BY activates_at
"""
KEY_BY_KID = "SELECT algorithm, public_jwk FROM signing_key WHERE kid = $1"
INSERT_KEY = """
INSERT INTO signing_key (kid, algorithm, public_jwk, private_jwk_encrypted, activates_at)
VALUES ($1, $2, $3, $4, $5)
"""
# The key signing now stops when its successor activates, and stays published until the last
# token it signed has expired.
RETIRE_KEYS = """
UPDATE signing_key SET retires_at = $1::timestamptz,
    expires_at = $1::timestamptz + make_interval(secs => $2)
WHERE retires_at IS NULL AND kid <> $3
"""
REVOKE = """
INSERT INTO revoked_token (jti, client_id, expires_at) VALUES ($1, $2, to_timestamp($3))
ON CONFLICT (jti) DO NOTHING
"""


def token_status_columns(first: int) -> str:
    """Whether a token is revoked and whether its client is disabled, as two columns; the
    token id and client id are parameters ``$first`` and ``$first+1``. Every request checks
    this, so it rides in the statement that opens the request's transaction."""
    return (
        f"EXISTS (SELECT 1 FROM revoked_token WHERE jti = ${first}) AS revoked, "
        f"EXISTS (SELECT 1 FROM oauth_client WHERE client_id = ${first + 1} "
        "AND disabled_at IS NOT NULL) AS client_disabled"
    )


def token_statuses_columns(first: int) -> str:
    """``token_status_columns`` for many tokens (ids ``$first``, their clients ``$first+1``):
    the revoked ones' ids and the disabled clients' ids, as two array columns."""
    return (
        f"ARRAY(SELECT jti FROM revoked_token WHERE jti = ANY(${first}::text[])) AS revoked, "
        f"ARRAY(SELECT client_id FROM oauth_client WHERE client_id = ANY(${first + 1}::text[]) "
        "AND disabled_at IS NOT NULL) AS disabled"
    )


TOKEN_STATUS = f"SELECT {token_status_columns(1)}"
TOKEN_FALLEN = "LH401"  # lighthouse.token_stands: the token is revoked or its client disabled
COUNT_REQUEST = """
INSERT INTO token_request_count (caller, window_start, requests)
VALUES ($1, date_trunc('minute', now()), 1)
ON CONFLICT (caller, window_start) DO UPDATE SET requests = token_request_count.requests + 1
RETURNING requests, extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - now())
"""
WINDOW_COUNT = """
SELECT coalesce((SELECT requests FROM token_request_count
                 WHERE caller = $1 AND window_start = date_trunc('minute', now())), 0),
       extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - now())
"""
FORGET_OLD_COUNTS = (
    "DELETE FROM token_request_count WHERE window_start < now() - interval '10 minutes'"
)
FORGET_EXPIRED_REVOCATIONS = "DELETE FROM revoked_token WHERE expires_at < now() - interval '1 day'"


@dataclass(frozen=True, slots=True)
class ClientRecord:
    client_id: str
    name: str
    secret_hash: str
    kind: str
    bureau_id: int | None
    bureau_code: str | None
    roles: list[str]
    scopes: list[str]
    disabled_at: datetime | None
    licensee_id: int | None = None  # a licensee's client acts for it
    previous_secret_hash: str | None = None  # a rotated-out secret, while its overlap lasts


@dataclass(frozen=True, slots=True)
class KeyRecord:
    kid: str
    algorithm: str
    public_jwk: dict[str, Any]
    private_jwk_encrypted: bytes
    activates_at: datetime
    retires_at: datetime | None
    expires_at: datetime | None


class OAuthRepository:
    """Works on a plain connection or pool: these tables carry no per-bureau rows."""

    def __init__(self, connection: asyncpg.Connection | asyncpg.Pool) -> None:
        self._db = connection

    async def client(self, client_id: str) -> ClientRecord | None:
        row = await self._db.fetchrow(CLIENT, client_id)
        return ClientRecord(**row) if row is not None else None

    async def clients(self) -> list[ClientRecord]:
        return [ClientRecord(**row) for row in await self._db.fetch(CLIENTS)]

    async def rotate_secret(self, client_id: str, secret_hash: str, overlap: timedelta) -> bool:
        """Replace an enabled client's secret; the old one keeps working for ``overlap``."""
        status = await self._db.execute(ROTATE_SECRET, client_id, secret_hash, overlap)
        return str(status).endswith(" 1")

    async def create_client(
        self,
        client_id: str,
        name: str,
        secret_hash: str,
        kind: str,
        bureau_id: int | None,
        roles: Sequence[str],
        scopes: Sequence[str],
        licensee_id: int | None = None,
    ) -> None:
        try:
            await self._db.execute(
                INSERT_CLIENT,
                client_id,
                name,
                secret_hash,
                kind,
                bureau_id,
                list(roles),
                list(scopes),
                licensee_id,
            )
        except asyncpg.PostgresError as error:
            if is_unique_violation(error):
                raise InvalidInput("client_id", f"a client {client_id!r} exists") from None
            if isinstance(error, asyncpg.CheckViolationError):
                raise InvalidInput("client", str(error)) from None
            raise

    async def disable_client(self, client_id: str) -> bool:
        return str(await self._db.execute(DISABLE_CLIENT, client_id)).endswith(" 1")

    async def published_keys(self) -> list[KeyRecord]:
        return [KeyRecord(**row) for row in await self._db.fetch(PUBLISHED_KEYS)]

    async def public_key(self, kid: str) -> tuple[str, dict[str, Any]] | None:
        """A signing key's algorithm and public half, published or long retired."""
        row = await self._db.fetchrow(KEY_BY_KID, kid)
        return (str(row["algorithm"]), dict(row["public_jwk"])) if row is not None else None

    async def add_key(
        self,
        kid: str,
        algorithm: str,
        public_jwk: dict[str, Any],
        sealed_private_jwk: bytes,
        activates_at: datetime,
        retire_others_after_seconds: int | None,
    ) -> None:
        await self._db.execute(
            INSERT_KEY, kid, algorithm, public_jwk, sealed_private_jwk, activates_at
        )
        if retire_others_after_seconds is not None:
            await self._db.execute(RETIRE_KEYS, activates_at, retire_others_after_seconds, kid)

    async def revoke(self, jti: str, client_id: str, expires_at: int) -> None:
        await self._db.execute(REVOKE, jti, client_id, expires_at)

    async def token_status(self, jti: str, client_id: str) -> tuple[bool, bool]:
        row = await self._db.fetchrow(TOKEN_STATUS, jti, client_id)
        assert row is not None
        return bool(row["revoked"]), bool(row["client_disabled"])

    @staticmethod
    async def begin_checking_token(uow: UnitOfWork, jti: str, client_id: str) -> tuple[bool, bool]:
        """Open ``uow`` and, in the same round trip, learn (revoked, client disabled): the
        check raises unless the token stands (migration 0010), and then ``uow`` is not open."""
        try:
            await uow.begin_with(
                call("lighthouse.token_stands", [(jti, "text"), (client_id, "text")])
            )
        except asyncpg.PostgresError as error:
            if error.sqlstate != TOKEN_FALLEN:
                raise
            return error.message == "revoked", error.message == "client disabled"
        return False, False

    @staticmethod
    async def begin_checking_tokens(
        uow: UnitOfWork, jtis: Sequence[str], client_ids: Sequence[str]
    ) -> tuple[set[str], set[str]]:
        """Open ``uow`` and, in the same statement, read which of the tokens are revoked and
        which of their clients are disabled."""
        row = await uow.begin(token_statuses_columns(3), list(jtis), list(client_ids))
        return set(row["revoked"]), set(row["disabled"])

    async def count_request(self, caller: str) -> tuple[int, float]:
        """Count one token request for ``caller`` in this minute; return the count and the
        seconds until the window ends."""
        row = await self._db.fetchrow(COUNT_REQUEST, caller)
        assert row is not None
        return int(row[0]), float(row[1])

    async def window_count(self, caller: str) -> tuple[int, float]:
        """How many requests ``caller`` made in this minute (without counting one more), and
        the seconds until the window ends."""
        row = await self._db.fetchrow(WINDOW_COUNT, caller)
        assert row is not None
        return int(row[0]), float(row[1])

    async def forget_old(self) -> None:
        await self._db.execute(FORGET_OLD_COUNTS)
        await self._db.execute(FORGET_EXPIRED_REVOCATIONS)
