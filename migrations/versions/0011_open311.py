"""Open311 GeoReport v2: the city's API keys for citizen and 1999 apps, and the service requests
they submitted (each an incident, with the token the client was given).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = """
-- An app that speaks Open311, with the one API key the city issued it. Only the key's SHA-256
-- is kept (the key is 256 random bits: a slow hash would add nothing). The app acts as a
-- service of its bureau: it sees what that bureau's services see, and never personal data.
CREATE TABLE lighthouse.open311_client (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    key_digest  bytea NOT NULL UNIQUE CHECK (length(key_digest) = 32),
    bureau_id   integer NOT NULL REFERENCES lighthouse.bureau (id),
    may_submit  boolean NOT NULL,
    issued_by   text NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- A service request submitted through Open311: the incident it became, the client that sent
-- it, the token the client was given and the address it gave (the city does not geocode).
CREATE TABLE lighthouse.open311_request (
    incident_id  bigint PRIMARY KEY REFERENCES lighthouse.incident (id),
    token        uuid NOT NULL UNIQUE,
    client_id    integer NOT NULL REFERENCES lighthouse.open311_client (id),
    address      text CHECK (length(address) <= 500),
    submitted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX open311_request_client_idx ON lighthouse.open311_request (client_id);

ALTER TABLE lighthouse.open311_request ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.open311_request FORCE ROW LEVEL SECURITY;
-- Seen with the incident it became (the incident's own policy decides).
CREATE POLICY open311_request_read ON lighthouse.open311_request FOR SELECT USING (
    EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id));
-- Written only by the client itself, for an incident it can see (the one it just reported).
CREATE POLICY open311_request_create ON lighthouse.open311_request FOR INSERT WITH CHECK (
    lighthouse.current_subject() = 'open311:' || client_id
    AND EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id));
"""

GRANTS = """
GRANT SELECT ON lighthouse.open311_client TO {role};
GRANT SELECT, INSERT ON lighthouse.open311_request TO {role};
"""


def upgrade() -> None:
    execute_script(UPGRADE)
    execute_script(GRANTS.format(role=app_role()))


def downgrade() -> None:
    execute_script("DROP TABLE lighthouse.open311_request; DROP TABLE lighthouse.open311_client;")
