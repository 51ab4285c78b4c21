"""A request opens in one round trip: the check that its token still stands raises instead of
answering, so it can travel with BEGIN and the caller's identity in one message (PostgreSQL's
simple query protocol returns no rows to asyncpg, but it does return errors).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = """
-- Raises LH401 ('revoked' or 'client disabled') unless the token stands; the caller's own
-- privileges (the application role reads both tables).
CREATE FUNCTION lighthouse.token_stands(token_id text, token_client_id text) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = lighthouse, public, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM lighthouse.revoked_token WHERE jti = token_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'LH401', MESSAGE = 'revoked';
    END IF;
    IF EXISTS (SELECT 1 FROM lighthouse.oauth_client
               WHERE client_id = token_client_id AND disabled_at IS NOT NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'LH401', MESSAGE = 'client disabled';
    END IF;
    RETURN true;
END;
$$;
REVOKE ALL ON FUNCTION lighthouse.token_stands FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.token_stands TO {role};
"""


def upgrade() -> None:
    execute_script(UPGRADE.format(role=app_role()))


def downgrade() -> None:
    execute_script("DROP FUNCTION lighthouse.token_stands")
