"""The audit trail and the policy set, for auditors."""

from api.graph.audit.schema import bundle

__all__ = ["bundle"]
