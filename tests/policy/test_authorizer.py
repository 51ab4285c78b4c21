"""The per-request authorizer: a decision foreseen for a read made ahead is not one of the
request's decisions until the request takes it."""

from __future__ import annotations

from api import bundled
from api.audit.collector import AuditCollector
from api.auth.principal import Principal, PrincipalKind
from api.policy import resources
from api.policy.authorizer import Authorizer
from api.policy.engine import PolicyEngine

ENGINE = PolicyEngine(bundled.directory("policies"), [("PWB", False), ("RDEC", True)])


def _viewer(*scopes: str) -> Principal:
    return Principal(
        subject="viewer", kind=PrincipalKind.STAFF, bureau_id=1, bureau_code="PWB",
        roles=frozenset({"viewer"}), scopes=frozenset(scopes),
    )  # fmt: skip


def test_a_foreseen_decision_is_audited_only_once_taken() -> None:
    audit = AuditCollector()
    authorizer = Authorizer(ENGINE, _viewer("incidents:read", "assets:read"), audit)

    assert authorizer.foresee("ListAssets", resources.ASSETS)
    assert (audit.grants, audit.denials, audit.allowed_by) == (0, 0, set())

    assert authorizer.decide("ListAssets", resources.ASSETS).allowed
    assert authorizer.decide("ListAssets", resources.ASSETS).allowed
    assert audit.grants == 1 and audit.allowed_by == {"assets.list"}
    assert authorizer.foresee("ListAssets", resources.ASSETS)
    assert audit.grants == 1


def test_a_foreseen_refusal_is_no_refusal_of_the_request() -> None:
    audit = AuditCollector()
    authorizer = Authorizer(ENGINE, _viewer("incidents:read"), audit)

    assert not authorizer.foresee("ListAssets", resources.ASSETS)
    assert (audit.grants, audit.denials, audit.denied_by) == (0, 0, set())
    assert not authorizer.decide("ListAssets", resources.ASSETS).allowed
    assert audit.denials == 1
