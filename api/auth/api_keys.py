"""API keys for Open311 clients: issued by the city, one per app, revocable at once.

A key is 256 random bits; only its SHA-256 is stored. The app it was issued to acts as a
service of its bureau (``open311:<id>``): it reads what that bureau's services read (the 1999
joint service centre's apps see the whole city), never personal data, and submits requests
only if its key was issued for that.
"""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

from api.auth.principal import Principal, PrincipalKind
from api.auth.tokens import InvalidToken
from api.repositories.open311 import Open311Client, Open311Clients

PREFIX = "l311_"
# An api_key longer than this is not one we issued: refused before it is hashed or looked up.
MAX_KEY_LENGTH = 100
READ_SCOPES = frozenset({"incidents:read"})
SUBMIT_SCOPES = READ_SCOPES | {"incidents:write"}


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def client_principal(client: Open311Client) -> Principal:
    return Principal(
        subject=f"open311:{client.id}",
        kind=PrincipalKind.SERVICE,
        bureau_id=client.bureau_id,
        bureau_code=client.bureau_code,
        scopes=SUBMIT_SCOPES if client.may_submit else READ_SCOPES,
        client_id=f"open311:{client.name}",
    )


class ApiKeys:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._clients = Open311Clients(pool)

    async def principal(self, key: str) -> Principal:
        """The app ``key`` was issued to; ``InvalidToken`` for a key that is unknown or revoked
        (looked up on every request, so a revocation takes effect at once)."""
        if not key.startswith(PREFIX) or len(key) > MAX_KEY_LENGTH:
            raise InvalidToken("the api_key is not one this city issued")
        client = await self._clients.by_digest(digest(key))
        if client is None:
            raise InvalidToken("the api_key is not one this city issued")
        if client.revoked_at is not None:
            raise InvalidToken("the api_key has been revoked")
        return client_principal(client)
