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

    async def verify(self, authorization: str | None) -> Principal:
        """The caller named by an ``Authorization`` header value (signature and claims only);
        anonymous without one. See ``needs_status_check``."""
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

    @staticmethod
    def status_problem(revoked: bool, client_disabled: bool) -> str | None:
        if revoked:
            return "the token has been revoked"
        if client_disabled:
            return "the token's client is disabled"
        return None

    async def authenticate(self, authorization: str | None) -> Principal:
        """Verify and check the token in one go (for WebSocket connections)."""
        principal = await self.verify(authorization)
        if self.needs_status_check(principal):
            assert principal.token_id is not None
            status = await self._oauth.token_status(principal.token_id, principal.client_id or "")
            problem = self.status_problem(*status)
            if problem:
                raise InvalidToken(problem)
        return principal


class AuthenticationMiddleware:
    """Resolves the principal of every HTTP request to the protected paths; a bad token is
    refused with 401 (RFC 6750) before anything else runs, and the refusal is audited.

    It also opens the request's unit of work: the statement that writes the caller's identity
    into the transaction checks, in the same round trip, that the token is not revoked and its
    client not disabled. The GraphQL operation then runs in that transaction.
    """

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
        uow = None
        timings = state["timings"]
        try:
            authenticator = resources.authenticator
            with timings.measure("auth"):
                principal = await authenticator.verify(header)
            uow = resources.database.unit_of_work(principal, lambda: "unknown")
            if authenticator.needs_status_check(principal):
                assert principal.token_id is not None
                # Reported apart: every request opens its transaction and sets its identity.
                with timings.measure("begin"):
                    status = await uow.open_checking(principal.token_id, principal.client_id or "")
                problem = authenticator.status_problem(*status)
                if problem:
                    raise InvalidToken(problem)
            state["principal"] = principal
            state["uow"] = uow
        except InvalidToken as error:
            if uow is not None:
                await uow.close(commit=False)
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
        try:
            await self.app(scope, receive, send)
        finally:
            # Normally the GraphQL operation commits it; a request that never ran one rolls back.
            await uow.close(commit=False)
