"""Change notifications between gateway processes (PostgreSQL LISTEN/NOTIFY)."""
