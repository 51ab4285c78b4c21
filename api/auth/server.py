"""The authorization server for machine clients: client credentials (RFC 6749 §4.4) issuing
RFC 9068 JWT access tokens, metadata (RFC 8414), JWKS, introspection (RFC 7662) and revocation
(RFC 7009).

The grant is written here rather than on authlib's AuthorizationServer, whose storage hooks are
synchronous while this service's database access is asynchronous; JOSE is joserfc's. Clients
and their secrets are managed by ``api.auth.clients``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import structlog
from joserfc import jwt
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.access.refusals import RefusalLedger
from api.access.scope import AccessGate
from api.audit.entries import AuditEntry
from api.auth.clients import ClientRegistry, ClientRejected
from api.auth.demo_sign_in import SignInRefused, redeem_code
from api.auth.keys import KeyRing
from api.auth.principal import SCOPES, Principal, PrincipalKind
from api.auth.tokens import mint
from api.metrics import Metrics
from api.repositories.oauth import ClientRecord, OAuthRepository
from api.settings import Settings

log = structlog.get_logger(__name__)

MAX_FORM_BYTES = 16_384
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> JSONResponse:
        headers = dict(NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="lighthouse", charset="UTF-8"'
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status,
            headers=headers,
        )


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    secret: str


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request", "send the parameters as application/x-www-form-urlencoded"
        )
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "the request is too large")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the form is not valid") from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in values:
            raise OAuthError("invalid_request", f"parameter {key} must be given exactly once")
        values[key] = value
    return values


def _credentials(request: Request, form: dict[str, str]) -> ClientCredentials | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            client_id, _, secret = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
        if "client_id" in form or "client_secret" in form:
            raise OAuthError("invalid_request", "use one client authentication method, not two")
        return ClientCredentials(unquote(client_id), unquote(secret))
    if "client_id" in form and "client_secret" in form:
        return ClientCredentials(form["client_id"], form["client_secret"])
    return None


class AuthorizationServer:
    """The endpoints. Rate limits are counted in PostgreSQL, so they hold across processes:
    failed client authentications per source address (a stranger guessing, or just sending
    wrong secrets, spends only its own address's budget — client ids are not secret), and tokens
    issued per authenticated client."""

    def __init__(
        self,
        settings: Settings,
        keys: KeyRing,
        oauth: OAuthRepository,
        gate: AccessGate,
        refusals: RefusalLedger,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._keys = keys
        self._oauth = oauth
        self._clients = ClientRegistry(oauth)
        self._gate = gate
        self._refusals = refusals

    # --- client authentication and rate limits --------------------------------------------

    async def _authenticate(self, request: Request, form: dict[str, str]) -> ClientRecord:
        """The client the request's credentials belong to. A source address past its budget of
        failed attempts is refused before its credentials are even looked at."""
        source = f"fail:{_address(request)}"
        failures, retry_after = await self._oauth.window_count(source)
        if failures >= self._settings.oauth.failed_token_requests_per_minute:
            raise _TooMany(max(1, int(retry_after) + 1))
        credentials = _credentials(request, form)
        try:
            if credentials is None:
                raise OAuthError("invalid_client", "client authentication is required", 401)
            try:
                return await self._clients.authenticate(credentials.client_id, credentials.secret)
            except ClientRejected as rejected:
                raise OAuthError("invalid_client", rejected.reason, 401) from None
        except OAuthError:
            await self._oauth.count_request(source)
            raise

    async def _limit_issuance(self, client: ClientRecord) -> None:
        count, retry_after = await self._oauth.count_request(f"issue:{client.client_id}")
        if count > self._settings.oauth.token_requests_per_minute:
            raise _TooMany(max(1, int(retry_after) + 1))
        if count == 1 and secrets.randbelow(50) == 0:
            await self._oauth.forget_old()

    # --- endpoints ------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        client: ClientRecord | None = None
        try:
            form = await _form(request)
            if form.get("grant_type") == "authorization_code":
                return await self._demo_sign_in(request, form)
            client = await self._authenticate(request, form)
            await self._limit_issuance(client)
            if form.get("grant_type") != "client_credentials":
                raise OAuthError("unsupported_grant_type", "only client_credentials is offered")
            resource = form.get("resource") or form.get("audience")
            if resource is not None and resource != self._settings.oauth.audience:
                raise OAuthError(
                    "invalid_target",
                    f"this server issues tokens for {self._settings.oauth.audience}",
                )
            allowed = set(client.scopes)
            requested = set(form["scope"].split()) if form.get("scope") else allowed
            if not requested <= allowed:
                raise OAuthError(
                    "invalid_scope",
                    "scope "
                    + " ".join(sorted(requested - allowed))
                    + " is not granted to this client",
                )
            issued = mint(
                self._keys,
                self._settings,
                subject=client.client_id,
                client_id=client.client_id,
                kind=PrincipalKind(client.kind),
                scopes=sorted(requested),
                bureau=client.bureau_code,
                roles=client.roles,
                licensee=client.licensee_id,
            )
        except _TooMany as limited:
            self._count("slow_down")
            await self._audit(request, client, "token", "DENY", {"reason": "rate limited"})
            return limited.response()
        except OAuthError as error:
            self._count(error.error)
            await self._audit(request, client, "token", "DENY", {"reason": error.error})
            return error.response()
        self._count("issued")
        await self._audit(
            request, client, "token", "ALLOW", {"jti": issued.claims["jti"], "scope": issued.scope}
        )
        return JSONResponse(
            {
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "scope": issued.scope,
            },
            headers=NO_STORE,
        )

    async def _demo_sign_in(self, request: Request, form: dict[str, str]) -> Response:
        """The console's code redeemed for a demo principal's token (api.auth.demo_sign_in);
        a public client, so failures spend the source address's budget as failed client
        authentications do."""
        if not self._settings.demo_sign_in_enabled:
            raise OAuthError(
                "unsupported_grant_type",
                "the authorization code grant is the demo's sign-in, offered outside production "
                "only; sign in to the console with the city's single sign-on",
            )
        source = f"fail:{_address(request)}"
        failures, retry_after = await self._oauth.window_count(source)
        if failures >= self._settings.oauth.failed_token_requests_per_minute:
            raise _TooMany(max(1, int(retry_after) + 1))
        try:
            issued = redeem_code(self._keys, self._settings, form)
        except SignInRefused as refused:
            await self._oauth.count_request(source)
            raise OAuthError(refused.error, refused.description) from None
        self._count("issued")
        await self._gate.append(
            AuditEntry.of(
                Principal(
                    subject=str(issued.claims["sub"]),
                    kind=PrincipalKind(str(issued.claims["kind"])),
                    bureau_code=issued.claims.get("bureau"),
                    client_id=self._settings.console.client_id,
                ),
                request_id=getattr(request.state, "request_id", ""),
                category="token",
                operation=request.url.path,
                decision="ALLOW",
                policy_version=self._gate.policy.version,
                details={"jti": issued.claims["jti"], "grant": "authorization_code"},
            )
        )
        return JSONResponse(
            {
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "scope": issued.scope,
            },
            headers=NO_STORE,
        )

    def _read_own_token(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this server signed (even if expired), or None."""
        try:
            decoded = jwt.decode(token, self._keys.public_keys, algorithms=["ES256", "RS256"])
        except (JoseError, ValueError):
            return None
        claims = dict(decoded.claims)
        if claims.get("iss") != self._settings.issuer:
            return None
        return claims

    async def introspect(self, request: Request) -> Response:
        try:
            form = await _form(request)
            client = await self._authenticate(request, form)
            if "introspector" not in client.roles:
                raise OAuthError(
                    "unauthorized_client", "this client may not introspect tokens", 403
                )
            token = form.get("token")
            if not token:
                raise OAuthError("invalid_request", "token is required")
        except _TooMany as limited:
            return limited.response()
        except OAuthError as error:
            return error.response()
        claims = self._read_own_token(token)
        now = time.time()
        active = False
        if (
            claims is not None
            and claims.get("exp", 0) > now
            and claims.get("nbf", 0) <= now + self._settings.oauth.clock_skew_seconds
        ):
            revoked, disabled = await self._oauth.token_status(
                str(claims.get("jti")), str(claims.get("client_id"))
            )
            active = not revoked and not disabled
        if not active or claims is None:
            return JSONResponse({"active": False}, headers=NO_STORE)
        fields = (
            "scope",
            "client_id",
            "sub",
            "exp",
            "iat",
            "nbf",
            "iss",
            "aud",
            "jti",
            "kind",
            "bureau",
            "licensee",
            "roles",
        )
        return JSONResponse(
            {
                "active": True,
                "token_type": "Bearer",
                **{k: claims[k] for k in fields if k in claims},
            },
            headers=NO_STORE,
        )

    async def revoke(self, request: Request) -> Response:
        client: ClientRecord | None = None
        try:
            form = await _form(request)
            if self._is_console_signing_out(request, form):
                return await self._console_sign_out(request, form)
            client = await self._authenticate(request, form)
            token = form.get("token")
            if not token:
                raise OAuthError("invalid_request", "token is required")
        except _TooMany as limited:
            return limited.response()
        except OAuthError as error:
            return error.response()
        claims = self._read_own_token(token)
        # RFC 7009: an invalid or unknown token is answered like a revoked one.
        if claims is not None and claims.get("jti"):
            if claims.get("client_id") != client.client_id:
                return OAuthError(
                    "unauthorized_client", "the token was not issued to this client"
                ).response()
            await self._oauth.revoke(
                str(claims["jti"]), client.client_id, int(claims.get("exp", time.time()))
            )
            await self._audit(request, client, "revocation", "ALLOW", {"jti": claims["jti"]})
        return Response(status_code=200, headers=NO_STORE)

    def _is_console_signing_out(self, request: Request, form: dict[str, str]) -> bool:
        """The console (a public client, RFC 7009 §2.1) revoking its own token as someone signs
        out of the demo sign-in: no client secret, its client id."""
        return (
            self._settings.demo_sign_in_enabled
            and form.get("client_id") == self._settings.console.client_id
            and "client_secret" not in form
            and _credentials(request, form) is None
        )

    async def _console_sign_out(self, request: Request, form: dict[str, str]) -> Response:
        token = form.get("token")
        if not token:
            return OAuthError("invalid_request", "token is required").response()
        claims = self._read_own_token(token)
        console = self._settings.console.client_id
        if claims is not None and claims.get("jti") and claims.get("client_id") == console:
            await self._oauth.revoke(
                str(claims["jti"]), console, int(claims.get("exp", time.time()))
            )
            await self._gate.append(
                AuditEntry.of(
                    Principal(
                        subject=str(claims.get("sub", "")),
                        kind=PrincipalKind(str(claims.get("kind", "staff"))),
                        bureau_code=claims.get("bureau"),
                        client_id=console,
                    ),
                    request_id=getattr(request.state, "request_id", ""),
                    category="revocation",
                    operation=request.url.path,
                    decision="ALLOW",
                    policy_version=self._gate.policy.version,
                    details={"jti": claims["jti"], "reason": "signed out"},
                )
            )
        # RFC 7009: an invalid, unknown or another client's token is answered as revoked.
        return Response(status_code=200, headers=NO_STORE)

    async def metadata(self, request: Request) -> Response:
        issuer = self._settings.issuer
        return JSONResponse(
            {
                "issuer": issuer,
                "token_endpoint": f"{issuer}/oauth/token",
                "jwks_uri": f"{issuer}/oauth/jwks",
                "introspection_endpoint": f"{issuer}/oauth/introspect",
                "revocation_endpoint": f"{issuer}/oauth/revoke",
                **(
                    {
                        "authorization_endpoint": f"{issuer}/oauth/authorize",
                        "grant_types_supported": ["client_credentials", "authorization_code"],
                        "response_types_supported": ["code"],
                        "code_challenge_methods_supported": ["S256"],
                        "token_endpoint_auth_methods_supported": [
                            "client_secret_basic",
                            "client_secret_post",
                            "none",
                        ],
                    }
                    if self._settings.demo_sign_in_enabled
                    else {
                        "grant_types_supported": ["client_credentials"],
                        "response_types_supported": [],
                        "token_endpoint_auth_methods_supported": [
                            "client_secret_basic",
                            "client_secret_post",
                        ],
                    }
                ),
                "introspection_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "revocation_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "scopes_supported": list(SCOPES),
                "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        await self._keys.reload_if_stale(self._oauth)
        return JSONResponse(self._keys.jwks(), headers={"Cache-Control": "max-age=300"})

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.tokens.labels(outcome).inc()

    async def _audit(
        self,
        request: Request,
        client: ClientRecord | None,
        category: str,
        decision: str,
        details: dict[str, object],
    ) -> None:
        request_id = getattr(request.state, "request_id", "")
        if client is None:
            # Not authenticated: counted per source address, so a flood writes few rows.
            reason = str(details.get("reason", "refused"))
            await self._refusals.refuse(_address(request), request.url.path, reason, request_id)
            return
        caller = Principal(
            subject=client.client_id,
            kind=PrincipalKind(client.kind),
            bureau_code=client.bureau_code,
            client_id=client.client_id,
        )
        await self._gate.append(
            AuditEntry.of(
                caller,
                request_id=request_id,
                category=category,
                operation=request.url.path,
                decision=decision,
                policy_version=self._gate.policy.version,
                details=details,
            )
        )


class _TooMany(Exception):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": "slow_down", "error_description": "too many token requests; retry later"},
            status_code=429,
            headers={**NO_STORE, "Retry-After": str(self.retry_after)},
        )


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
