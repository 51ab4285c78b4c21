"""From a request's bearer token to its Principal."""

from __future__ import annotations

import orjson
import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth.keys import KeyRing
from api.auth.principal import Principal
from api.auth.tokens import UNKNOWN_KEY, InvalidToken, TokenVerifier
from api.repositories.oauth import OAuthRepository

log = structlog.get_logger(__name__)


class Authenticator:
    def __init__(
        self, verifier: TokenVerifier, oauth: OAuthRepository, issuer: str, keys: KeyRing
    ) -> None:
        self._verifier = verifier
        self._oauth = oauth
        self._issuer = issuer
        self._keys = keys

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller named by an ``Authorization`` header value; anonymous without one."""
        if not authorization:
            return Principal.anonymous()
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("use the Bearer scheme with an access token")
        try:
            principal = self._verifier.verify(token.strip())
        except InvalidToken as error:
            # A key rotated in by another process: reload (at most every few seconds) and retry.
            if error.reason != UNKNOWN_KEY or not await self._keys.reload_if_stale(self._oauth):
                raise
            principal = self._verifier.verify(token.strip())
        if principal.issuer == self._issuer and principal.token_id:
            # Checked on every request, so a revocation or a disabled client takes effect at once.
            revoked, disabled = await self._oauth.token_status(
                principal.token_id, principal.client_id or ""
            )
            if revoked:
                raise InvalidToken("the token has been revoked")
            if disabled:
                raise InvalidToken("the token's client is disabled")
        return principal


class AuthenticationMiddleware:
    """Resolves the principal of every HTTP request to the protected paths; a bad token is
    refused with 401 (RFC 6750) before anything else runs, and the refusal is audited."""

    def __init__(self, app: ASGIApp, protected: tuple[str, ...] = ("/graphql",)) -> None:
        self.app = app
        self._protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self._protected):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        resources = state["resources"]
        header = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        try:
            state["principal"] = await resources.authenticator.authenticate(header)
        except InvalidToken as error:
            await resources.audit_refusal(state.get("request_id", ""), scope, error.reason)
            body = orjson.dumps(
                {"errors": [{"message": error.reason, "extensions": {"code": "UNAUTHENTICATED"}}]}
            )
            challenge = f'Bearer realm="lighthouse", error="invalid_token", error_description="{error.reason}"'
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", challenge.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
