"""The state machine against the rule book (README's workflow, ARCHITECTURE's lifecycle).

Expectations are this file's own tables, never ``lifecycle.TRANSITIONS``, ``CLOSING_REASONS`` or
``allowed_actions``: a test that computes what is allowed from the production table agrees with
any change made to it.
"""

from __future__ import annotations

import pytest

from api.domain import lifecycle
from api.domain.errors import TransitionRejected
from api.domain.lifecycle import ClosingReason as R
from api.domain.lifecycle import IncidentAction as A
from api.domain.lifecycle import IncidentStatus as S
from api.domain.lifecycle import StatusClass as C

# status → action → the status it leads to; anything not listed is forbidden. A transfer leaves a
# dispatched incident VERIFIED for the receiving bureau (the rule book does not say; see
# tests/graph/incidents/test_transitions.py), and an earlier one where it was.
RULE_BOOK: dict[S, dict[A, S]] = {
    S.DETECTED: {A.VERIFY: S.VERIFIED, A.CLOSE: S.CLOSED, A.TRANSFER: S.DETECTED,
                 A.MARK_DUPLICATE: S.CLOSED},
    S.VERIFIED: {A.DISPATCH: S.DISPATCHED, A.CLOSE: S.CLOSED, A.TRANSFER: S.VERIFIED,
                 A.MARK_DUPLICATE: S.CLOSED},
    S.DISPATCHED: {A.START_WORK: S.IN_PROGRESS, A.CLOSE: S.CLOSED, A.TRANSFER: S.VERIFIED,
                   A.MARK_DUPLICATE: S.CLOSED},
    S.IN_PROGRESS: {A.RESOLVE: S.RESOLVED},
    S.RESOLVED: {A.CLOSE: S.CLOSED, A.REOPEN: S.IN_PROGRESS},
    S.CLOSED: {},
}  # fmt: skip
# closeIncident's reasons: FIXED only after RESOLVED; DUPLICATE only through markDuplicate.
WITHOUT_FIX = frozenset({R.FALSE_POSITIVE, R.NOT_RESPONSIBLE, R.TRANSFERRED})
CLOSING_REASONS: dict[S, frozenset[R]] = {
    S.DETECTED: WITHOUT_FIX,
    S.VERIFIED: WITHOUT_FIX,
    S.DISPATCHED: WITHOUT_FIX,
    S.RESOLVED: frozenset({R.FIXED}),
}
STATUS_CLASS = {
    S.DETECTED: C.OPEN,
    S.VERIFIED: C.OPEN,
    S.DISPATCHED: C.OPEN,
    S.IN_PROGRESS: C.OPEN,
    S.RESOLVED: C.FIXED,
    S.CLOSED: C.CLOSED,
}


def _allowed(status: S) -> list[str]:
    return sorted(RULE_BOOK[status])


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("action", [a for a in A if a is not A.CLOSE])
def test_every_action_in_every_status(status: S, action: A) -> None:
    if action in RULE_BOOK[status]:
        transition = lifecycle.plan(status, action)
        assert (transition.from_status, transition.to_status) == (status, RULE_BOOK[status][action])
        expected_reason = R.DUPLICATE if action is A.MARK_DUPLICATE else None
        assert transition.closing_reason is expected_reason
    else:
        with pytest.raises(TransitionRejected) as rejected:
            lifecycle.plan(status, action)
        assert sorted(rejected.value.allowed) == _allowed(status)


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("reason", [*R, None])
def test_closing_with_every_reason_in_every_status(status: S, reason: R | None) -> None:
    if A.CLOSE in RULE_BOOK[status] and reason in CLOSING_REASONS[status]:
        transition = lifecycle.plan(status, A.CLOSE, reason)
        assert (transition.to_status, transition.closing_reason) == (S.CLOSED, reason)
    else:
        with pytest.raises(TransitionRejected) as rejected:
            lifecycle.plan(status, A.CLOSE, reason)
        assert sorted(rejected.value.allowed) == _allowed(status)


@pytest.mark.parametrize("status", list(S))
def test_allowed_actions_are_the_rule_books(status: S) -> None:
    assert sorted(lifecycle.allowed_actions(status)) == _allowed(status)


def test_rejections_say_why() -> None:
    with pytest.raises(TransitionRejected, match="FIXED is not admitted"):
        lifecycle.plan(S.VERIFIED, A.CLOSE, R.FIXED)
    with pytest.raises(TransitionRejected, match="markDuplicate"):
        lifecycle.plan(S.VERIFIED, A.CLOSE, R.DUPLICATE)
    with pytest.raises(TransitionRejected, match="not admitted"):
        lifecycle.plan(S.DETECTED, A.CLOSE, None)
    with pytest.raises(TransitionRejected, match="only CLOSE"):
        lifecycle.plan(S.DETECTED, A.VERIFY, R.FIXED)


def test_status_classes() -> None:
    assert lifecycle.STATUS_CLASS == STATUS_CLASS
