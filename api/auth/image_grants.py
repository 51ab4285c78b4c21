"""Links to a frame's image for a browser's ``<img>``, which cannot send a bearer token.

The graph issues a link only to a caller who may see the image then (``Frame.imageLink``):
``/frames/{sha256}?grant=…``, where the grant is a JWT signed with the gateway's key, of its own
type (``lighthouse-image+jwt``: never taken as an access token, nor an access token as one),
for that one frame (its audience), for five minutes at most and never past the caller's own
token. It carries the caller's identity, so the image is authorized and audited again when the
link is used, as that caller, and the caller's token is checked to still stand (a revoked token
stops its links at once). The access token itself never goes into a URL.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from api.auth.keys import KeyRing
from api.auth.principal import Principal, PrincipalKind
from api.auth.tokens import InvalidToken
from api.settings import Settings

GRANT_TYPE = "lighthouse-image+jwt"
GRANT_SECONDS = 300


@dataclass(frozen=True, slots=True)
class ImageLink:
    url: str
    expires_at: int


def _audience(settings: Settings, key: str) -> str:
    return f"{settings.issuer}/frames/{key}"


def issue_image_link(
    keys: KeyRing, settings: Settings, principal: Principal, frame_key: str
) -> ImageLink:
    """A link to frame ``frame_key``'s image for ``principal`` (who may see it now)."""
    key = keys.current()
    if key is None:
        raise RuntimeError("no active signing key; run `lighthouse keys rotate`")
    now = int(time.time())
    expires = now + GRANT_SECONDS
    if principal.expires_at is not None:
        expires = min(expires, int(principal.expires_at))
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": _audience(settings, frame_key),
        "iat": now,
        "exp": expires,
        "jti": secrets.token_urlsafe(12),
        "sub": principal.subject,
        "kind": principal.kind.value,
        "roles": sorted(principal.roles),
        "scope": " ".join(sorted(principal.scopes)),
    }
    for name, value in (
        ("bureau", principal.bureau_code),
        ("bureau_id", principal.bureau_id),
        ("client_id", principal.client_id),
        ("token", principal.token_id),
        ("token_issuer", principal.issuer),
    ):
        if value is not None:
            claims[name] = value
    header = {"alg": key.algorithm, "typ": GRANT_TYPE, "kid": key.kid}
    grant = jwt.encode(header, claims, key.key, algorithms=[key.algorithm])
    return ImageLink(f"/frames/{frame_key}?grant={grant}", expires)


def read_image_grant(keys: KeyRing, settings: Settings, grant: str, frame_key: str) -> Principal:
    """The caller a grant for frame ``frame_key`` was issued to; ``InvalidToken`` for a grant
    that is not this server's, is for another frame, or has expired."""
    if len(grant) > 8192:
        raise InvalidToken("the image link is not valid")
    try:
        decoded = jwt.decode(grant, keys.public_keys, algorithms=["ES256", "RS256"])
    except (JoseError, ValueError):
        raise InvalidToken("the image link is not valid") from None
    claims = dict(decoded.claims)
    if decoded.header.get("typ") != GRANT_TYPE or claims.get("iss") != settings.issuer:
        raise InvalidToken("the image link is not valid")
    if claims.get("aud") != _audience(settings, frame_key):
        raise InvalidToken("the image link is for another frame")
    expires = claims.get("exp")
    if not isinstance(expires, int) or expires < time.time():
        raise InvalidToken("the image link has expired; ask the graph for the frame again")
    try:
        return Principal(
            subject=str(claims["sub"]),
            kind=PrincipalKind(str(claims["kind"])),
            bureau_id=claims.get("bureau_id"),
            bureau_code=claims.get("bureau"),
            roles=frozenset(claims.get("roles", ())),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            client_id=claims.get("client_id"),
            token_id=claims.get("token"),
            issuer=claims.get("token_issuer"),
            expires_at=expires,
        )
    except (KeyError, ValueError, TypeError):
        raise InvalidToken("the image link is not valid") from None
