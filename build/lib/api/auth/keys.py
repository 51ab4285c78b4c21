"""Token signing keys: kept in the database, private halves encrypted, rotated without downtime.

Rotation: a new key is published (in the JWKS) at once and starts signing after a delay, so
resource servers that cache the JWKS learn it before they meet it; the old key stops signing
when the new one starts and stays published until the last token it signed has expired.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey, KeyParameters, KeySet, RSAKey

from api.repositories.oauth import KeyRecord, OAuthRepository
from api.settings import Environment, Settings

log = structlog.get_logger(__name__)

# Development and tests only: settings validation refuses production without a real key.
DEVELOPMENT_KEY_ENCRYPTION_KEY = hashlib.sha256(
    b"lighthouse development key-encryption key"
).digest()
RELOAD_AT_MOST_EVERY = 5.0


class KeyEncryption:
    """AES-256-GCM under the key-encryption key; the key id is bound as associated data."""

    def __init__(self, settings: Settings) -> None:
        if settings.oauth.key_encryption_key is not None:
            raw = base64.b64decode(settings.oauth.key_encryption_key.get_secret_value())
        else:
            if settings.environment is Environment.PRODUCTION:  # pragma: no cover - settings refuse
                raise RuntimeError("LIGHTHOUSE_KEY_ENCRYPTION_KEY is required in production")
            log.warning("keys.development_key_encryption_key")
            raw = DEVELOPMENT_KEY_ENCRYPTION_KEY
        self._aead = AESGCM(raw)

    def seal(self, kid: str, private_jwk: dict[str, Any]) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, orjson.dumps(private_jwk), kid.encode())

    def unseal(self, kid: str, sealed: bytes) -> dict[str, Any]:
        plain = self._aead.decrypt(sealed[:12], sealed[12:], kid.encode())
        value: dict[str, Any] = orjson.loads(plain)
        return value


def generate_key(algorithm: str) -> ECKey | RSAKey:
    kid = f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"
    parameters: KeyParameters = {"kid": kid, "use": "sig", "alg": algorithm}
    if algorithm == "ES256":
        return ECKey.generate_key("P-256", parameters=parameters, private=True)
    return RSAKey.generate_key(2048, parameters=parameters, private=True)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    key: ECKey | RSAKey
    activates_at: datetime
    retires_at: datetime | None


class KeyRing:
    """This process's view of the signing keys; reloaded from the database on demand."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._encryption = KeyEncryption(settings)
        self._signing: list[SigningKey] = []
        self._public = KeySet([])
        self._published: list[dict[str, Any]] = []
        self._loaded_at = 0.0

    async def load(self, repository: OAuthRepository) -> None:
        records = await repository.published_keys()
        self._apply(records)
        self._loaded_at = time.monotonic()

    def _apply(self, records: list[KeyRecord]) -> None:
        signing: list[SigningKey] = []
        published: list[dict[str, Any]] = []
        for record in records:
            private = self._encryption.unseal(record.kid, record.private_jwk_encrypted)
            key_type = ECKey if record.algorithm == "ES256" else RSAKey
            key = key_type.import_key(private)
            signing.append(
                SigningKey(
                    record.kid, record.algorithm, key, record.activates_at, record.retires_at
                )
            )
            published.append(record.public_jwk)
        self._signing = signing
        self._published = published
        self._public = KeySet(
            [(ECKey if p["kty"] == "EC" else RSAKey).import_key(p) for p in published]
        )

    async def reload_if_stale(self, repository: OAuthRepository) -> bool:
        """Reload if the last load is older than a few seconds (an unknown ``kid`` may be a key
        another process just created); return whether it reloaded."""
        if time.monotonic() - self._loaded_at < RELOAD_AT_MOST_EVERY:
            return False
        await self.load(repository)
        return True

    async def ensure_signing_key(self, repository: OAuthRepository) -> None:
        """Create the first key if there is none (a new installation)."""
        await self.load(repository)
        if self.current() is None:
            await self.rotate(repository, activation_delay=0)
            log.info("keys.created_first_key")

    async def rotate(self, repository: OAuthRepository, activation_delay: int) -> str:
        key = generate_key(self._settings.oauth.signing_algorithm)
        kid = str(key.kid)
        activates_at = datetime.now(UTC) + timedelta(seconds=activation_delay)
        # Tokens signed until activation stay valid for their lifetime, plus the clock skew.
        keep = (
            self._settings.oauth.access_token_ttl_seconds + self._settings.oauth.clock_skew_seconds
        )
        await repository.add_key(
            kid,
            self._settings.oauth.signing_algorithm,
            key.as_dict(private=False),
            self._encryption.seal(kid, key.as_dict(private=True)),
            activates_at,
            retire_others_after_seconds=keep if self._signing else None,
        )
        await self.load(repository)
        return kid

    def current(self, now: datetime | None = None) -> SigningKey | None:
        """The newest active key that has not retired."""
        moment = now or datetime.now(UTC)
        active = [
            key
            for key in self._signing
            if key.activates_at <= moment and (key.retires_at is None or key.retires_at > moment)
        ]
        return active[-1] if active else None

    @property
    def public_keys(self) -> KeySet:
        return self._public

    def has_kid(self, kid: str) -> bool:
        return any(jwk.get("kid") == kid for jwk in self._published)

    def jwks(self) -> dict[str, Any]:
        return {"keys": list(self._published)}
