from __future__ import annotations

import pytest

from api.domain import lifecycle
from api.domain.errors import TransitionRejected
from api.domain.lifecycle import ClosingReason as R
from api.domain.lifecycle import IncidentAction as A
from api.domain.lifecycle import IncidentStatus as S

EXPECTED = {
    (S.DETECTED, A.VERIFY): S.VERIFIED,
    (S.DETECTED, A.CLOSE): S.CLOSED,
    (S.DETECTED, A.TRANSFER): S.DETECTED,
    (S.DETECTED, A.MARK_DUPLICATE): S.CLOSED,
    (S.VERIFIED, A.DISPATCH): S.DISPATCHED,
    (S.VERIFIED, A.CLOSE): S.CLOSED,
    (S.VERIFIED, A.TRANSFER): S.VERIFIED,
    (S.VERIFIED, A.MARK_DUPLICATE): S.CLOSED,
    (S.DISPATCHED, A.START_WORK): S.IN_PROGRESS,
    (S.DISPATCHED, A.CLOSE): S.CLOSED,
    (S.DISPATCHED, A.TRANSFER): S.VERIFIED,
    (S.DISPATCHED, A.MARK_DUPLICATE): S.CLOSED,
    (S.IN_PROGRESS, A.RESOLVE): S.RESOLVED,
    (S.RESOLVED, A.CLOSE): S.CLOSED,
    (S.RESOLVED, A.REOPEN): S.IN_PROGRESS,
}


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("action", list(A))
def test_every_pair_is_allowed_or_rejected(status: S, action: A) -> None:
    reason = None
    if action is A.CLOSE:
        admitted = sorted(lifecycle.CLOSING_REASONS[status])
        reason = admitted[0] if admitted else R.FIXED
    if (status, action) in EXPECTED:
        transition = lifecycle.plan(status, action, reason)
        assert transition.to_status is EXPECTED[status, action]
    else:
        with pytest.raises(TransitionRejected) as rejected:
            lifecycle.plan(status, action, reason)
        assert rejected.value.allowed == [a.value for a in lifecycle.allowed_actions(status)]


def test_closing_reasons_depend_on_status() -> None:
    assert lifecycle.plan(S.RESOLVED, A.CLOSE, R.FIXED).closing_reason is R.FIXED
    with pytest.raises(TransitionRejected, match="FIXED is not admitted"):
        lifecycle.plan(S.VERIFIED, A.CLOSE, R.FIXED)
    with pytest.raises(TransitionRejected, match="markDuplicate"):
        lifecycle.plan(S.VERIFIED, A.CLOSE, R.DUPLICATE)
    with pytest.raises(TransitionRejected, match="not admitted"):
        lifecycle.plan(S.DETECTED, A.CLOSE, None)
    with pytest.raises(TransitionRejected, match="only CLOSE"):
        lifecycle.plan(S.DETECTED, A.VERIFY, R.FIXED)


def test_mark_duplicate_closes_as_duplicate() -> None:
    assert lifecycle.plan(S.DETECTED, A.MARK_DUPLICATE).closing_reason is R.DUPLICATE


def test_status_classes_cover_every_status() -> None:
    assert set(lifecycle.STATUS_CLASS) == set(S)
    assert lifecycle.STATUS_CLASS[S.RESOLVED] is lifecycle.StatusClass.FIXED
    assert lifecycle.STATUS_CLASS[S.CLOSED] is lifecycle.StatusClass.CLOSED
    assert lifecycle.allowed_actions(S.CLOSED) == []
