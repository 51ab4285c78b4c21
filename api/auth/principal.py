"""The caller of a request, as every layer below authentication sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(subject="anonymous", kind=PrincipalKind.ANONYMOUS)

    @property
    def is_authenticated(self) -> bool:
        return self.kind is not PrincipalKind.ANONYMOUS

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
        }
