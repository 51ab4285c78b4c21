"""PostgreSQL access: where the server is, the pool, the unit of work and migrations."""
