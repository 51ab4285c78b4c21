"""Access tokens for the tests' principals, signed with the gateway's own key."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from joserfc import jwt

from api.auth.dev_principals import DEV_PRINCIPALS
from api.auth.keys import KeyRing
from api.auth.principal import PrincipalKind
from api.auth.tokens import mint
from api.db.pool import connect
from api.repositories.oauth import OAuthRepository
from api.settings import OAuthSettings, Settings


class TokenFactory:
    def __init__(self, owner_url: str, issuer: str) -> None:
        self._owner_url = owner_url
        self.settings = Settings(oauth=OAuthSettings(issuer=issuer))
        # A named principal's token is minted once and reused until it has less than five
        # minutes left: the suite runs longer than a token lives.
        self._cache: dict[str, tuple[str, float]] = {}
        self._reuse_for = self.settings.oauth.access_token_ttl_seconds - 300
        self._ring_loaded: tuple[float, KeyRing] | None = None

    async def _ring(self) -> KeyRing:
        """The gateway's keys, reloaded at most every few seconds (a test may rotate them;
        thousands of tokens a run must not each open a connection)."""
        if self._ring_loaded is not None and time.monotonic() - self._ring_loaded[0] < 5:
            return self._ring_loaded[1]
        connection = await connect(self._owner_url, self.settings, "lighthouse-tests")
        try:
            ring = KeyRing(self.settings)
            await ring.ensure_signing_key(OAuthRepository(connection))
        finally:
            await connection.close()
        self._ring_loaded = (time.monotonic(), ring)
        return ring

    def named(self, name: str) -> str:
        """A token for a named development principal (``api.auth.dev_principals``)."""
        cached = self._cache.get(name)
        if cached is None or time.monotonic() - cached[1] > self._reuse_for:
            principal = DEV_PRINCIPALS[name]
            token = self.custom(
                subject=principal.subject,
                kind=principal.kind.value,
                bureau=principal.bureau,
                roles=list(principal.roles),
                scopes=list(principal.scopes),
            )
            cached = self._cache[name] = (token, time.monotonic())
        return cached[0]

    def custom(
        self,
        *,
        subject: str,
        kind: str,
        scopes: list[str],
        bureau: str | None = None,
        roles: list[str] | None = None,
        ttl: int | None = None,
        **claims: Any,
    ) -> str:
        ring = asyncio.run(self._ring()) if not _in_loop() else _run_in_thread(self._ring())
        return mint(
            ring,
            self.settings,
            subject=subject,
            client_id=claims.pop("client_id", "lighthouse-tests"),
            kind=PrincipalKind(kind),
            scopes=scopes,
            bureau=bureau,
            roles=roles,
            ttl=ttl,
            licensee=claims.pop("licensee", None),
        ).access_token

    def signing_key(self) -> Any:
        """The gateway's current signing key (a ``SigningKey``), for tokens made by hand."""
        ring = asyncio.run(self._ring()) if not _in_loop() else _run_in_thread(self._ring())
        return ring.current()

    def signed(
        self,
        claims: dict[str, Any],
        header: dict[str, Any] | None = None,
        key: Any = None,
        algorithms: list[str] | None = None,
    ) -> str:
        """A token with exactly these claims, signed with the gateway's current key (or ``key``)."""
        ring = asyncio.run(self._ring()) if not _in_loop() else _run_in_thread(self._ring())
        current = ring.current()
        assert current is not None
        signing_key = key if key is not None else current.key
        base_header = {"alg": current.algorithm, "typ": "at+jwt", "kid": current.kid}
        base_header.update(header or {})
        return jwt.encode(
            base_header, claims, signing_key, algorithms=algorithms or [base_header["alg"]]
        )

    def valid_claims(self, **updates: Any) -> dict[str, Any]:
        """Claims of a valid token for a Public Works supervisor, with ``updates`` applied."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": "pwb-supervisor",
            "aud": self.settings.oauth.audience,
            "client_id": "lighthouse-tests",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": f"test-{now}-{id(updates)}",
            "scope": "incidents:read incidents:write assets:read",
            "kind": "staff",
            "roles": ["supervisor"],
            "bureau": "PUBLIC_WORKS",
        }
        claims.update(updates)
        return {k: v for k, v in claims.items() if v is not None}


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(coroutine: Any) -> Any:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
