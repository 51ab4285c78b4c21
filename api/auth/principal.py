"""The caller of a request, as every layer below authentication sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

SCOPES = (
    "incidents:read",
    "incidents:write",
    "assets:read",
    "assets:write",
    "licensing:admin",
    "models:admin",
    "usage:read",
    "audit:read",
    "inference:invoke",
    "pii:read",
)
ROLES = (
    "viewer",
    "dispatcher",
    "supervisor",
    "city_viewer",
    "developer",
    "auditor",
    "introspector",
    "router",
)


class PrincipalKind(StrEnum):
    ANONYMOUS = "anonymous"
    STAFF = "staff"
    SERVICE = "service"
    LICENSEE = "licensee"
    AUDITOR = "auditor"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    kind: PrincipalKind
    bureau_id: int | None = None
    bureau_code: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    client_id: str | None = None
    token_id: str | None = None
    issuer: str | None = None
    expires_at: int | None = None
    licensee_id: int | None = None  # the licensee a licensee's client acts for

    @classmethod
    def anonymous(cls, subject: str = "anonymous") -> Principal:
        return cls(subject=subject, kind=PrincipalKind.ANONYMOUS)

    @classmethod
    def system(cls, name: str) -> Principal:
        """The service itself, for work no caller is behind (token endpoint, start-up)."""
        return cls(subject=f"system:{name}", kind=PrincipalKind.SYSTEM)

    @property
    def is_authenticated(self) -> bool:
        return self.kind not in (PrincipalKind.ANONYMOUS, PrincipalKind.SYSTEM)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def database_settings(self) -> dict[str, str]:
        """The transaction-local settings that row-level security reads (``lighthouse.*``)."""
        return {
            "lighthouse.subject": self.subject,
            "lighthouse.kind": self.kind.value,
            "lighthouse.bureau_id": "" if self.bureau_id is None else str(self.bureau_id),
            "lighthouse.roles": ",".join(sorted(self.roles)),
            "lighthouse.scopes": ",".join(sorted(self.scopes)),
            "lighthouse.licensee_id": "" if self.licensee_id is None else str(self.licensee_id),
        }
