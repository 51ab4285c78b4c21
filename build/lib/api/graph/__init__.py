"""The GraphQL graph: one package per domain, combined in ``schema.py``."""
