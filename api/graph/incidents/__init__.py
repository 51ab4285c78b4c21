"""Incidents and their workflow: events, work orders, transfers, duplicates."""
