"""The caller, as the service sees them: what frontends show and adapt to."""

from __future__ import annotations

import strawberry

from api.graph.core.context import Info


@strawberry.federation.type(
    shareable=True, description="Who is asking, as this service understood the access token."
)
class Viewer:
    subject: str
    kind: str
    bureau_code: str | None
    roles: list[str]
    scopes: list[str]
    client_id: str | None
    issuer: str | None


@strawberry.type
class ViewerQueries:
    @strawberry.federation.field(
        shareable=True, description="The caller: subject, kind, bureau, roles and scopes."
    )
    def me(self, info: Info) -> Viewer:
        principal = info.context.principal
        return Viewer(
            subject=principal.subject,
            kind=principal.kind.value,
            bureau_code=principal.bureau_code,
            roles=sorted(principal.roles),
            scopes=sorted(principal.scopes),
            client_id=principal.client_id,
            issuer=principal.issuer,
        )
