"""Trusted documents: the GraphQL operations frontend teams register ahead of time.

A registered document is checked once (parsed, validated against the schema, limit-checked) when
it is registered; requests then send its id (``documentId``, or the automatic persisted queries'
SHA-256) instead of its text, and a city may accept registered documents only. Documents are
immutable: an id names one text for good.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE lighthouse.trusted_document (
    id               text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$'),
    sha256           text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    client           text NOT NULL CHECK (client ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    document         text NOT NULL CHECK (length(document) BETWEEN 1 AND 65536),
    operation_names  text[] NOT NULL CHECK (cardinality(operation_names) >= 1),
    registered_by    text NOT NULL,
    registered_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trusted_document_sha256_idx ON lighthouse.trusted_document (sha256);
CREATE INDEX trusted_document_client_idx ON lighthouse.trusted_document (client, registered_at);
CREATE TRIGGER trusted_document_immutable
    BEFORE UPDATE OR DELETE ON lighthouse.trusted_document
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();

-- Every caller's request may name a registered document; only the city's developers register.
ALTER TABLE lighthouse.trusted_document ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.trusted_document FORCE ROW LEVEL SECURITY;
CREATE POLICY trusted_document_read ON lighthouse.trusted_document FOR SELECT USING (true);
CREATE POLICY trusted_document_register ON lighthouse.trusted_document FOR INSERT WITH CHECK (
    lighthouse.current_kind() = 'staff' AND lighthouse.has_role('developer')
    AND registered_by = current_setting('lighthouse.subject', true));
"""

GRANTS = """
GRANT SELECT, INSERT ON lighthouse.trusted_document TO {role};
"""


def upgrade() -> None:
    execute_script(TABLES)
    execute_script(GRANTS.format(role=app_role()))


def downgrade() -> None:
    execute_script("DROP TABLE lighthouse.trusted_document")
