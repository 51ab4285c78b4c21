"""Cedar entities for Lighthouse's principals and resources."""

from __future__ import annotations

from api.auth.principal import Principal, PrincipalKind
from api.domain.models import IncidentFacts
from api.policy.engine import Entity

PRINCIPAL_TYPES = {
    PrincipalKind.STAFF: "Staff",
    PrincipalKind.SERVICE: "Service",
    PrincipalKind.LICENSEE: "Licensee",
    PrincipalKind.AUDITOR: "Auditor",
    PrincipalKind.ANONYMOUS: "Anonymous",
    PrincipalKind.SYSTEM: "Anonymous",
}

INCIDENTS = Entity("Collection", "incidents")
ASSETS = Entity("Collection", "assets")
MODELS = Entity("Collection", "models")
LICENSING = Entity("Collection", "licensing")
DOCUMENTS = Entity("Collection", "documents")
AUDIT_TRAIL = Entity("AuditTrail", "lighthouse")
POLICY_STORE = Entity("PolicyStore", "lighthouse")


def bureau(code: str) -> Entity:
    return Entity("Bureau", code)


def principal_entity(principal: Principal) -> Entity:
    type_name = PRINCIPAL_TYPES[principal.kind]
    if type_name == "Anonymous":
        return Entity(type_name, principal.subject)
    attrs: list[tuple[str, object]] = [("roles", frozenset(principal.roles))]
    if type_name in ("Staff", "Service") and principal.bureau_code is not None:
        attrs.insert(0, ("bureau", bureau(principal.bureau_code)))
    if type_name == "Licensee" and principal.licensee_id is not None:
        attrs.insert(0, ("company", company(principal.licensee_id)))
    return Entity(type_name, principal.subject, tuple(attrs))


def company(licensee_id: int) -> Entity:
    return Entity("Company", str(licensee_id))


def licence_entity(licence_id: int, licensee_id: int, own_compute: bool = False) -> Entity:
    return Entity(
        "Licence", str(licence_id), (("holder", company(licensee_id)), ("ownCompute", own_compute))
    )


def incident_entity(facts: IncidentFacts) -> Entity:
    attrs: list[tuple[str, object]] = [("responsibleBureau", bureau(facts.responsible_bureau))]
    if facts.reporting_bureau is not None:
        attrs.append(("reportingBureau", bureau(facts.reporting_bureau)))
    if facts.asset_bureau is not None:
        attrs.append(("assetBureau", bureau(facts.asset_bureau)))
    attrs.append(("heldBy", frozenset(bureau(code) for code in facts.held_by)))
    attrs.append(("sharedWith", frozenset(bureau(code) for code in facts.shared_with)))
    return Entity("Incident", str(facts.incident_id), tuple(attrs))
