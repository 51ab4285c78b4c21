"""From a request's bearer token to its Principal, and the one check that the token still stands."""

from __future__ import annotations

import time
from collections.abc import Sequence

from api.auth.keys import KeyRing
from api.auth.principal import Principal
from api.auth.tokens import UNKNOWN_KEY, InvalidToken, TokenVerifier
from api.db.unit_of_work import UnitOfWork
from api.repositories.oauth import OAuthRepository


class Authenticator:
    def __init__(
        self,
        verifier: TokenVerifier,
        oauth: OAuthRepository,
        issuer: str,
        keys: KeyRing,
        clock_skew_seconds: int,
    ) -> None:
        self._verifier = verifier
        self._oauth = oauth
        self._issuer = issuer
        self._keys = keys
        self._skew = clock_skew_seconds

    async def verify(self, authorization: str | None) -> Principal:
        """The caller named by an ``Authorization`` header value (signature and claims only);
        anonymous without one. ``check`` then confirms the token still stands."""
        if not authorization:
            return Principal.anonymous()
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("use the Bearer scheme with an access token")
        try:
            return self._verifier.verify(token.strip())
        except InvalidToken as error:
            # A key rotated in by another process: reload (at most every few seconds) and retry.
            if error.reason != UNKNOWN_KEY or not await self._keys.reload_if_stale(self._oauth):
                raise
            return self._verifier.verify(token.strip())

    def needs_status_check(self, principal: Principal) -> bool:
        """Tokens this service issued can be revoked, and their client disabled: every use is
        checked against the database, so either takes effect at once."""
        return principal.issuer == self._issuer and principal.token_id is not None

    async def check(self, uow: UnitOfWork, principal: Principal) -> None:
        """The one check that a verified token still stands, on every path (an HTTP request, a
        WebSocket connection, each subscription event, each step of a long request): it has not
        expired since it was verified, been revoked, or lost its client.

        For tokens this service issued, ``uow`` is opened by the statement that also sets the
        caller's identity, so the check costs no extra round trip; otherwise ``uow`` is left
        to open on its first statement. On failure ``uow`` is closed and ``InvalidToken`` raised.
        """
        if self._expired(principal):
            raise InvalidToken("the access token has expired")
        if not self.needs_status_check(principal):
            return
        assert principal.token_id is not None
        revoked, disabled = await OAuthRepository.begin_checking_token(
            uow, principal.token_id, principal.client_id or ""
        )
        problem = (
            "the token has been revoked"
            if revoked
            else "the token's client is disabled"
            if disabled
            else None
        )
        if problem is not None:
            await uow.close(commit=False)
            raise InvalidToken(problem)

    async def check_many(
        self, uow: UnitOfWork, principals: Sequence[Principal]
    ) -> list[str | None]:
        """``check`` for callers whose steps share one transaction (a group of admissions):
        ``uow`` is opened by the statement that reads every token's status. For each caller,
        why its token no longer stands, or None; ``uow`` stays open either way."""
        problems: list[str | None] = [
            "the access token has expired" if self._expired(p) else None for p in principals
        ]
        checked = [
            (n, p)
            for n, p in enumerate(principals)
            if problems[n] is None and self.needs_status_check(p)
        ]
        if not checked:
            return problems
        revoked, disabled = await OAuthRepository.begin_checking_tokens(
            uow, [p.token_id or "" for _, p in checked], [p.client_id or "" for _, p in checked]
        )
        for n, principal in checked:
            if principal.token_id in revoked:
                problems[n] = "the token has been revoked"
            elif (principal.client_id or "") in disabled:
                problems[n] = "the token's client is disabled"
        return problems

    def _expired(self, principal: Principal) -> bool:
        expires_at = principal.expires_at
        return expires_at is not None and expires_at + self._skew < time.time()
