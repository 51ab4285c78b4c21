"""RFC 9068 JWT access tokens: minted by this service, verified from it or a trusted issuer.

Verification pins everything an attacker could otherwise choose: the header type (``at+jwt``),
the algorithms (per issuer, never ``none`` or an HMAC), the issuer, the audience, expiry and
not-before (with a small clock-skew allowance), and a key id known for that issuer.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet

from api.auth.issuers import ExternalIssuer, IssuerRegistry
from api.auth.keys import KeyRing
from api.auth.principal import Principal, PrincipalKind
from api.settings import Settings

TOKEN_TYPES = ("at+jwt", "application/at+jwt")
LOCAL_ALGORITHMS = ("ES256", "RS256")
CACHE_SIZE = 10_000
UNKNOWN_KEY = "the token was signed with an unknown key"


class InvalidToken(Exception):
    """The bearer token cannot be accepted; ``reason`` is safe to return to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    claims: dict[str, Any]


def mint(
    keys: KeyRing,
    settings: Settings,
    *,
    subject: str,
    client_id: str,
    kind: PrincipalKind,
    scopes: list[str],
    bureau: str | None = None,
    roles: list[str] | None = None,
    ttl: int | None = None,
    licensee: int | None = None,
) -> IssuedToken:
    """Sign an access token with the current key (RFC 9068 claims plus Lighthouse's own)."""
    key = keys.current()
    if key is None:
        raise RuntimeError("no active signing key; run `lighthouse keys rotate`")
    now = int(time.time())
    lifetime = ttl or settings.oauth.access_token_ttl_seconds
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "sub": subject,
        "aud": settings.oauth.audience,
        "client_id": client_id,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(18),
        "scope": " ".join(sorted(set(scopes))),
        "kind": kind.value,
        "roles": sorted(set(roles or ())),
    }
    if bureau is not None:
        claims["bureau"] = bureau
    if licensee is not None:
        claims["licensee"] = licensee
    header = {"alg": key.algorithm, "typ": "at+jwt", "kid": key.kid}
    token = jwt.encode(header, claims, key.key, algorithms=[key.algorithm])
    return IssuedToken(token, lifetime, claims["scope"], claims)


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        header_part, payload_part, _ = token.split(".")
        header = orjson.loads(base64.urlsafe_b64decode(header_part + "=" * (-len(header_part) % 4)))
        payload = orjson.loads(
            base64.urlsafe_b64decode(payload_part + "=" * (-len(payload_part) % 4))
        )
    except (ValueError, TypeError):
        raise InvalidToken("the token is not a JWT") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise InvalidToken("the token is not a JWT")
    return header, payload


class TokenVerifier:
    """Turns a bearer token into a Principal, or raises InvalidToken."""

    def __init__(
        self,
        settings: Settings,
        keys: KeyRing,
        issuers: IssuerRegistry,
        bureau_ids: dict[str, int],
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._issuers = issuers
        self._bureau_ids = bureau_ids
        # Verified tokens, by their text: a repeat costs a dictionary lookup, not a signature
        # check is still checked on every use, and so is that its key is still published: a key
        # its issuer withdrew (a leaked key) stops its tokens at once.
        self._verified: OrderedDict[str, tuple[Principal, str]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, kid = cached
            self._verified.move_to_end(token)
            if principal.expires_at is not None and principal.expires_at + self._skew < time.time():
                raise InvalidToken("the token has expired")
            if not self._still_published(principal, kid):
                del self._verified[token]
                raise InvalidToken("the token was signed with a key its issuer has withdrawn")
            return principal
        principal, kid = self._verify(token)
        self._verified[token] = (principal, kid)
        if len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _still_published(self, principal: Principal, kid: str) -> bool:
        if principal.issuer == self._settings.issuer:
            return self._keys.has_kid(kid)
        external = self._issuers.get(principal.issuer or "")
        return external is not None and any(key.kid == kid for key in external.keys.keys)

    @property
    def _skew(self) -> int:
        return self._settings.oauth.clock_skew_seconds

    def _verify(self, token: str) -> tuple[Principal, str]:
        """The token's principal and the id of the key that signed it."""
        header, unverified_claims = _unverified(token)
        if str(header.get("typ", "")).lower() not in TOKEN_TYPES:
            raise InvalidToken("the token is not an access token (typ must be at+jwt)")
        if "crit" in header:
            # RFC 7515 §4.1.11: a recipient must refuse extensions it does not understand.
            raise InvalidToken(
                "the token's header lists critical extensions (crit) this service does not support"
            )
        issuer = unverified_claims.get("iss")
        if issuer == self._settings.issuer:
            algorithms: tuple[str, ...] = LOCAL_ALGORITHMS
            keys: KeySet = self._keys.public_keys
            audience = self._settings.oauth.audience
            external: ExternalIssuer | None = None
        else:
            external = self._issuers.get(str(issuer))
            if external is None:
                raise InvalidToken(
                    f"the token's issuer is not trusted: {str(issuer)[:200]!r}; this gateway "
                    f"issues its own tokens as {self._settings.issuer} (see "
                    f"{self._settings.issuer}/.well-known/oauth-authorization-server)"
                )
            algorithms = tuple(external.config.algorithms)
            keys = external.keys
            audience = external.config.audience
        if header.get("alg") not in algorithms:
            raise InvalidToken("the token's signing algorithm is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not any(k.kid == kid for k in keys.keys):
            if external is not None:
                external.request_refresh()
            raise InvalidToken(UNKNOWN_KEY)
        try:
            decoded = jwt.decode(token, keys, algorithms=list(algorithms))
        except (JoseError, ValueError):
            raise InvalidToken("the token's signature is not valid") from None
        claims = decoded.claims
        registry = jwt.JWTClaimsRegistry(
            leeway=self._skew,
            iss={"essential": True, "value": str(issuer)},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise InvalidToken(_claim_problem(error)) from None
        if external is not None:
            return self._external_principal(external, claims), kid
        return self._local_principal(claims), kid

    def _bureau(self, code: object) -> tuple[int | None, str | None]:
        if not isinstance(code, str) or code not in self._bureau_ids:
            return None, None
        return self._bureau_ids[code], code

    def _local_principal(self, claims: dict[str, Any]) -> Principal:
        try:
            kind = PrincipalKind(claims.get("kind", "service"))
        except ValueError:
            raise InvalidToken("the token names an unknown principal kind") from None
        if kind in (PrincipalKind.ANONYMOUS, PrincipalKind.SYSTEM) or not claims.get("jti"):
            raise InvalidToken("the token is not an access token this service issues")
        bureau_id, bureau_code = self._bureau(claims.get("bureau"))
        licensee = claims.get("licensee")
        return Principal(
            subject=str(claims["sub"]),
            kind=kind,
            bureau_id=bureau_id,
            bureau_code=bureau_code,
            roles=frozenset(_strings(claims.get("roles"))),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            client_id=str(claims.get("client_id", "")) or None,
            token_id=str(claims["jti"]),
            issuer=str(claims["iss"]),
            expires_at=int(claims["exp"]),
            # Only this service's own tokens name a licensee, and only a licensee's.
            licensee_id=licensee
            if kind is PrincipalKind.LICENSEE and type(licensee) is int
            else None,
        )

    def _external_principal(self, issuer: ExternalIssuer, claims: dict[str, Any]) -> Principal:
        config = issuer.config
        code = claims.get(config.bureau_claim)
        if isinstance(code, str):
            code = config.bureau_map.get(code, code)
        bureau_id, bureau_code = self._bureau(code)
        roles = frozenset(_strings(claims.get(config.roles_claim)))
        scope_value = claims.get(config.scope_claim, "")
        scopes = frozenset(
            scope_value.split() if isinstance(scope_value, str) else _strings(scope_value)
        )
        kind = PrincipalKind.AUDITOR if "auditor" in roles else PrincipalKind(config.kind)
        subject = claims.get(config.subject_claim) or claims["sub"]
        return Principal(
            subject=f"{config.issuer}#{subject}",
            kind=kind,
            bureau_id=bureau_id,
            bureau_code=bureau_code,
            roles=roles,
            scopes=scopes,
            client_id=str(claims.get("client_id") or claims.get("azp") or "") or None,
            token_id=str(claims.get("jti") or "") or None,
            issuer=config.issuer,
            expires_at=int(claims["exp"]),
        )


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _claim_problem(error: JoseError) -> str:
    if isinstance(error, ExpiredTokenError):
        return "the token has expired"
    claim = getattr(error, "claim", "")
    problems = {
        "nbf": "the token is not valid yet",
        "iat": "the token was issued in the future",
        "aud": "the token is not meant for this service (audience)",
        "iss": "the token's issuer does not match",
        "sub": "the token has no subject",
        "exp": "the token has no valid expiry",
    }
    return problems.get(claim, "the token's claims are not valid")
