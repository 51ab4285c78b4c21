"""The error policy: expected errors keep a code; unexpected ones reveal nothing."""

from __future__ import annotations

from graphql import GraphQLError

from api.domain.errors import InvalidInput, VersionConflict
from api.graph.core.extensions import ErrorPolicyExtension


def test_unexpected_errors_are_masked_with_the_request_id() -> None:
    original = RuntimeError("password=hunter2 at db.internal:5432")
    error = GraphQLError("password=hunter2", path=["incident"], original_error=original)
    masked = ErrorPolicyExtension._format(error, "req-42")
    assert "hunter2" not in masked.message
    assert "req-42" in masked.message
    assert masked.extensions == {"code": "INTERNAL_ERROR", "requestId": "req-42"}
    assert masked.path == ["incident"]


def test_domain_errors_keep_message_and_code() -> None:
    error = GraphQLError("x", original_error=InvalidInput("filter.near.radiusMeters", "too big"))
    formatted = ErrorPolicyExtension._format(error, "req")
    assert formatted.message == "filter.near.radiusMeters: too big"
    assert formatted.extensions == {"code": "INVALID_INPUT", "field": "filter.near.radiusMeters"}
    conflict = ErrorPolicyExtension._format(
        GraphQLError("x", original_error=VersionConflict("incident", 1, 2)), "req"
    )
    assert conflict.extensions == {"code": "VERSION_CONFLICT"}


def test_validation_errors_are_coded() -> None:
    formatted = ErrorPolicyExtension._format(GraphQLError("Cannot query field 'x'"), "req")
    assert formatted.extensions == {"code": "GRAPHQL_VALIDATION_FAILED"}
