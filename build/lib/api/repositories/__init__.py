"""Repositories: the only modules that hold SQL, one per domain."""
