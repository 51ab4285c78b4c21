"""The demo's sign-in: the authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636) for the
console, as a public client, where the "user" picks one of the demo principals. Outside
production only (``Settings.demo_sign_in_enabled``); in a city the console signs in with the
city's single sign-on instead, by the same protocol.

The code is not stored: it is a short-lived JWT signed with the gateway's key (header type
``lighthouse-code+jwt``, so it is never taken as an access token), bound to the PKCE challenge,
the redirect URI and the client. Without the verifier, which never leaves the browser that
asked, a code is worth nothing; within its 60 seconds it may be redeemed more than once by that
browser, which is what a stored code would prevent (acceptable for the demo's principals).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from api.auth.dev_principals import DEV_PRINCIPALS, DevPrincipal
from api.auth.keys import KeyRing
from api.auth.principal import PrincipalKind
from api.auth.tokens import IssuedToken, mint
from api.settings import Settings

CODE_TYPE = "lighthouse-code+jwt"
CODE_SECONDS = 60
# PKCE's S256 challenge is the base64url of a SHA-256 (43 characters); its verifier 43 to 128
# unreserved characters (RFC 7636 §4.1, §4.2).
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
# The console signs its people in for an hour at most; then it asks again.
TOKEN_SECONDS = 3600


class SignInRefused(Exception):
    """An OAuth error (``error`` per RFC 6749 §5.2) with what to do about it."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A checked authorization request from the console."""

    client_id: str
    redirect_uri: str
    challenge: str
    state: str

    @classmethod
    def checked(cls, settings: Settings, params: dict[str, str]) -> AuthorizationRequest:
        """The request, or SignInRefused naming the first thing wrong with it."""
        if params.get("response_type") != "code":
            raise SignInRefused("unsupported_response_type", "response_type must be code")
        if params.get("client_id") != settings.console.client_id:
            raise SignInRefused("unauthorized_client", "only the console signs in here")
        if params.get("redirect_uri") != console_redirect_uri(settings):
            raise SignInRefused(
                "invalid_request", f"redirect_uri must be {console_redirect_uri(settings)}"
            )
        if params.get("code_challenge_method") != "S256":
            raise SignInRefused("invalid_request", "code_challenge_method must be S256")
        challenge = params.get("code_challenge", "")
        if not CHALLENGE.fullmatch(challenge):
            raise SignInRefused("invalid_request", "code_challenge must be a S256 challenge")
        state = params.get("state", "")
        if not 1 <= len(state) <= 200 or not state.isprintable():
            raise SignInRefused("invalid_request", "state must be 1 to 200 printable characters")
        return cls(settings.console.client_id, console_redirect_uri(settings), challenge, state)


def console_redirect_uri(settings: Settings) -> str:
    return f"{settings.issuer}/console/"


def issue_code(keys: KeyRing, settings: Settings, request: AuthorizationRequest, name: str) -> str:
    """A code for the demo principal ``name`` (which must exist)."""
    if name not in DEV_PRINCIPALS:
        raise SignInRefused("access_denied", f"no demo principal {name!r}")
    key = keys.current()
    if key is None:
        raise RuntimeError("no active signing key; run `lighthouse keys rotate`")
    now = int(time.time())
    claims = {
        "iss": settings.issuer,
        "aud": request.client_id,
        "sub": name,
        "iat": now,
        "exp": now + CODE_SECONDS,
        "jti": secrets.token_urlsafe(12),
        "redirect_uri": request.redirect_uri,
        "code_challenge": request.challenge,
    }
    header = {"alg": key.algorithm, "typ": CODE_TYPE, "kid": key.kid}
    return jwt.encode(header, claims, key.key, algorithms=[key.algorithm])


def redeem_code(keys: KeyRing, settings: Settings, form: dict[str, str]) -> IssuedToken:
    """An access token for the principal a code names, once the verifier matches its challenge
    and the client and redirect URI are the ones it was issued to."""
    code, verifier = form.get("code", ""), form.get("code_verifier", "")
    if not VERIFIER.fullmatch(verifier):
        raise SignInRefused("invalid_request", "code_verifier is missing or malformed")
    claims = _code_claims(keys, settings, code)
    if form.get("client_id") != claims.get("aud"):
        raise SignInRefused("invalid_grant", "the code was issued to another client")
    if form.get("redirect_uri") != claims.get("redirect_uri"):
        raise SignInRefused("invalid_grant", "redirect_uri differs from the authorization's")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != claims.get("code_challenge"):
        raise SignInRefused("invalid_grant", "code_verifier does not match the challenge")
    principal = DEV_PRINCIPALS.get(str(claims.get("sub")))
    if principal is None:
        raise SignInRefused("invalid_grant", "the code names no demo principal")
    return _token(keys, settings, principal)


def _code_claims(keys: KeyRing, settings: Settings, code: str) -> dict[str, Any]:
    try:
        decoded = jwt.decode(code, keys.public_keys, algorithms=["ES256", "RS256"])
    except (JoseError, ValueError):
        raise SignInRefused("invalid_grant", "the code is not one this server issued") from None
    claims = dict(decoded.claims)
    if decoded.header.get("typ") != CODE_TYPE or claims.get("iss") != settings.issuer:
        raise SignInRefused("invalid_grant", "the code is not one this server issued")
    if not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
        raise SignInRefused("invalid_grant", "the code has expired; sign in again")
    return claims


def _token(keys: KeyRing, settings: Settings, principal: DevPrincipal) -> IssuedToken:
    return mint(
        keys,
        settings,
        subject=principal.subject,
        client_id=settings.console.client_id,
        kind=PrincipalKind(principal.kind),
        scopes=list(principal.scopes),
        bureau=principal.bureau,
        roles=list(principal.roles),
        ttl=min(TOKEN_SECONDS, settings.oauth.access_token_ttl_seconds),
    )
