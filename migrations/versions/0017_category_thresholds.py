"""Thresholds from evidence: the confidence a category's finding needs to open or join an
incident is a decision of the city's model officers, with the evidence it rests on (the
precision the bureau asked for, and the precision and recall the reviews promised at it), not a
setting changed silently.

Each decision is a row of ``category_threshold``, never changed; the newest per category is in
force and overrides the settings' threshold (``LIGHTHOUSE_VISION_THRESHOLD(S)``), which stays
the default for categories no decision names. The vision workers read them as they record each
batch, so a decision takes effect without a restart.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE lighthouse.category_threshold (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    category            text NOT NULL REFERENCES lighthouse.incident_category (code),
    threshold           double precision NOT NULL CHECK (threshold > 0 AND threshold <= 1),
    -- The evidence: the precision asked for, and what the reviews gave at this threshold.
    target_precision    double precision CHECK (target_precision > 0 AND target_precision <= 1),
    expected_precision  double precision CHECK (expected_precision BETWEEN 0 AND 1),
    expected_recall     double precision CHECK (expected_recall BETWEEN 0 AND 1),
    judged              integer CHECK (judged >= 0),
    reason              text NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 2000),
    decided_by          text NOT NULL,
    decided_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX category_threshold_newest_idx ON lighthouse.category_threshold (category, id DESC);
CREATE TRIGGER category_threshold_append_only
    BEFORE UPDATE OR DELETE ON lighthouse.category_threshold
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();

ALTER TABLE lighthouse.category_threshold ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.category_threshold FORCE ROW LEVEL SECURITY;
-- Read by whoever reads the model registry and by the vision workers (which record findings).
CREATE POLICY category_threshold_read ON lighthouse.category_threshold FOR SELECT USING (
    (SELECT lighthouse.current_kind()) = 'system'
    OR ((SELECT lighthouse.has_scope('incidents:read'))
        AND (SELECT lighthouse.current_kind()) IN ('staff', 'service', 'auditor')));
CREATE POLICY category_threshold_decide ON lighthouse.category_threshold FOR INSERT WITH CHECK (
    lighthouse.has_scope('models:admin') AND lighthouse.current_kind() = 'staff'
    AND decided_by = lighthouse.current_subject());
GRANT SELECT, INSERT ON lighthouse.category_threshold TO {role};

-- The evidence, across every bureau (thresholds are the city's, per category): a version's
-- judged detections as confidence and right or wrong, nothing else of them; for the city's
-- model officers only (models:admin).
CREATE FUNCTION lighthouse.judged_confidences(model text, version text, categories text[])
RETURNS TABLE (category text, confidence double precision, "right" boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
    SELECT r.category, r.confidence, r.outcome IN ('CONFIRMED', 'TRANSFERRED')
    FROM lighthouse.detection_review r
    WHERE lighthouse.has_scope('models:admin')
      AND r.model = judged_confidences.model AND r.model_version = judged_confidences.version
      AND r.outcome IN ('CONFIRMED', 'TRANSFERRED', 'REJECTED')
      AND (categories IS NULL OR r.category = ANY(categories))
$$;
REVOKE ALL ON FUNCTION lighthouse.judged_confidences(text, text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.judged_confidences(text, text, text[]) TO {role};
"""

DOWNGRADE = """
DROP FUNCTION lighthouse.judged_confidences(text, text, text[]);
DROP TABLE lighthouse.category_threshold;
"""


def upgrade() -> None:
    execute_script(UPGRADE.format(role=app_role()))


def downgrade() -> None:
    execute_script(DOWNGRADE)
