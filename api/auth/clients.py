"""Machine clients of the authorization server: registration, secrets and authentication.

One service for everyone who manages clients — the CLI today, the licensing domain next — so
secrets are generated, hashed and compared in one place. Client secrets are 256-bit random
values, stored as SHA-256 digests and compared in constant time (a slow password hash would only
make the token endpoint a CPU target: the secrets have no low-entropy guesses to slow down).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from api.auth.principal import ROLES, SCOPES, PrincipalKind
from api.domain.errors import InvalidInput
from api.repositories.oauth import ClientRecord, OAuthRepository

SECRET_PREFIX = "sha256$"
# Compared against when the client does not exist, so a miss costs what a hit costs.
UNKNOWN_CLIENT_HASH = SECRET_PREFIX + hashlib.sha256(b"no such client").hexdigest()
CLIENT_KINDS = (PrincipalKind.SERVICE, PrincipalKind.LICENSEE)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return SECRET_PREFIX + hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored: str) -> bool:
    return hmac.compare_digest(hash_secret(secret).encode(), stored.encode())


class ClientRejected(Exception):
    """Client authentication failed; ``reason`` is safe to tell the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClientRegistration:
    client_id: str
    name: str
    kind: PrincipalKind
    scopes: Sequence[str]
    roles: Sequence[str] = ()
    bureau_id: int | None = None
    licensee_id: int | None = None  # the licensee a licensee's client acts for


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    client_id: str
    secret: str  # shown once; only its digest is stored


class ClientRegistry:
    def __init__(self, repository: OAuthRepository) -> None:
        self._repository = repository

    async def register(self, registration: ClientRegistration) -> RegisteredClient:
        """Create a client with a new secret; InvalidInput for unknown scopes, roles or kind,
        or a client id already taken."""
        unknown = [s for s in registration.scopes if s not in SCOPES]
        unknown += [r for r in registration.roles if r not in ROLES]
        if unknown:
            raise InvalidInput("client", f"unknown scope or role: {' '.join(unknown)}")
        if registration.kind not in CLIENT_KINDS:
            raise InvalidInput("kind", "must be service or licensee")
        secret = new_secret()
        await self._repository.create_client(
            registration.client_id,
            registration.name,
            hash_secret(secret),
            registration.kind.value,
            registration.bureau_id,
            registration.roles,
            registration.scopes,
            registration.licensee_id,
        )
        return RegisteredClient(registration.client_id, secret)

    async def rotate(self, client_id: str, overlap: timedelta) -> RegisteredClient | None:
        """A new secret for an enabled client (shown once); the old one keeps working for
        ``overlap``, then stops. None if there is no such enabled client."""
        secret = new_secret()
        if not await self._repository.rotate_secret(client_id, hash_secret(secret), overlap):
            return None
        return RegisteredClient(client_id, secret)

    async def disable(self, client_id: str) -> bool:
        """Disable a client: no new tokens, and its tokens stop working at once."""
        return await self._repository.disable_client(client_id)

    async def authenticate(self, client_id: str, secret: str) -> ClientRecord:
        """The enabled client these credentials belong to; ClientRejected otherwise."""
        client = await self._repository.client(client_id)
        stored = client.secret_hash if client is not None else UNKNOWN_CLIENT_HASH
        matches = secret_matches(secret, stored)
        previous = client.previous_secret_hash if client is not None else None
        # The rotated-out secret, while its overlap lasts (compared either way: same cost).
        matches_previous = secret_matches(secret, previous or UNKNOWN_CLIENT_HASH)
        if client is None or not (matches or (previous is not None and matches_previous)):
            raise ClientRejected("unknown client or wrong secret")
        if client.disabled_at is not None:
            raise ClientRejected("this client is disabled")
        return client
