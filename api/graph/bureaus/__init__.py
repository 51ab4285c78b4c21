"""Bureaus (the tenants) and the category routing table."""
