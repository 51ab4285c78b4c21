"""Named principals for development and the demo (``lighthouse token --as NAME``)."""

from __future__ import annotations

from dataclasses import dataclass

from api.auth.principal import PrincipalKind

READ_WRITE = ("incidents:read", "incidents:write", "assets:read")


@dataclass(frozen=True, slots=True)
class DevPrincipal:
    subject: str
    kind: PrincipalKind
    bureau: str | None
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    about: str


DEV_PRINCIPALS = {
    p.subject: p
    for p in (
        DevPrincipal("pwb-supervisor", PrincipalKind.STAFF, "PUBLIC_WORKS", ("supervisor",),
                     (*READ_WRITE, "assets:write", "pii:read"),
                     "Public Works supervisor: the whole workflow, personal data, asset register"),
        DevPrincipal("pwb-dispatcher", PrincipalKind.STAFF, "PUBLIC_WORKS", ("dispatcher",),
                     READ_WRITE, "Public Works dispatcher: verify, dispatch, transfer (no closing)"),
        DevPrincipal("pwb-viewer", PrincipalKind.STAFF, "PUBLIC_WORKS", ("viewer",),
                     ("incidents:read", "assets:read"), "Public Works viewer: read only"),
        DevPrincipal("epb-supervisor", PrincipalKind.STAFF, "ENVIRONMENTAL_PROTECTION",
                     ("supervisor",), (*READ_WRITE, "pii:read"),
                     "Environmental Protection supervisor"),
        DevPrincipal("water-dispatcher", PrincipalKind.STAFF, "WATER_RESOURCES", ("dispatcher",),
                     READ_WRITE, "Water Resources dispatcher"),
        DevPrincipal("police-viewer", PrincipalKind.STAFF, "POLICE", ("viewer",),
                     ("incidents:read", "assets:read"), "Police viewer"),
        DevPrincipal("jsc-operator", PrincipalKind.STAFF, "RDEC", ("dispatcher",), READ_WRITE,
                     "1999 joint service centre: sees all, verifies, routes, closes false reports"),
        DevPrincipal("city-viewer", PrincipalKind.STAFF, None, ("city_viewer",),
                     ("incidents:read", "assets:read"), "City-wide viewer (mayor's office)"),
        DevPrincipal("rdec-evaluator", PrincipalKind.STAFF, "RDEC", ("supervisor",),
                     ("incidents:read", "models:admin"),
                     "Research, Development and Evaluation Commission: decides the models' versions"),
        DevPrincipal("licensing-officer", PrincipalKind.STAFF, "ECONOMIC_DEVELOPMENT",
                     ("licensing_officer",), ("licensing:admin", "usage:read"),
                     "Economic Development licensing officer: licensees, licences, usage, statements"),
        DevPrincipal("auditor", PrincipalKind.AUDITOR, None, ("auditor",), ("audit:read",),
                     "Auditor: access records and policies, no personal data"),
        DevPrincipal("camera-gateway", PrincipalKind.SERVICE, "POLICE", (),
                     ("incidents:read", "incidents:write", "assets:read"),
                     "Police camera gateway: reports what the models detect"),
    )
}  # fmt: skip
