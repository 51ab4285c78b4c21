"""Operations gauges for /metrics: the frames queue's depth, frames waiting and failed, the
analyses of the last hour by outcome and the age of the audit chain's newest anchor, as counts
only (no row of any bureau is disclosed), read in one call by the application role.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = """
-- Frames not yet analysed are few beside those that were: counted from their own index.
CREATE INDEX frame_unfinished_idx ON lighthouse.frame (status) WHERE status <> 'ANALYSED';
CREATE INDEX frame_analysis_time_idx ON lighthouse.frame_analysis (analysed_at);

-- Counts across every bureau (the owner's rights, row-level security not applying): what an
-- operator's dashboard needs, and nothing a bureau's rows would tell.
CREATE FUNCTION lighthouse.operations_gauges()
RETURNS TABLE (gauge text, label text, value double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
    SELECT 'queue_jobs', status::text, count(*)::double precision
    FROM lighthouse.pgqueuer GROUP BY status
    UNION ALL
    SELECT 'frames', status, count(*) FROM lighthouse.frame
    WHERE status <> 'ANALYSED' GROUP BY status
    UNION ALL
    SELECT 'analyses_last_hour', outcome, count(*) FROM lighthouse.frame_analysis
    WHERE analysed_at > now() - interval '1 hour' GROUP BY outcome
    UNION ALL
    SELECT 'audit_anchor_age_seconds', '', extract(epoch FROM now() - max(anchored_at))
    FROM lighthouse.audit_anchor HAVING count(*) > 0
$$;
REVOKE ALL ON FUNCTION lighthouse.operations_gauges() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.operations_gauges() TO {role};
"""


def upgrade() -> None:
    execute_script(UPGRADE.format(role=app_role()))


def downgrade() -> None:
    execute_script(
        """
        DROP FUNCTION lighthouse.operations_gauges();
        DROP INDEX lighthouse.frame_analysis_time_idx;
        DROP INDEX lighthouse.frame_unfinished_idx;
        """
    )
