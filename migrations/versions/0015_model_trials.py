"""Model trials: a candidate version tried beside the one in production, in shadow or as a canary.

- A SHADOW decision has the candidate analyse a share of the live frames as well as the
  production version; its analyses are recorded with the role SHADOW and its findings as
  detections whose outcome is SHADOW: they open and join nothing, and are compared with
  production's (``api.repositories.trials``).
- A CANARY decision has the candidate analyse a share of the frames instead of the production
  version, for real; when the share of its reviewed detections that people rejected passes the
  decision's bound (once at least ``min_reviewed`` were reviewed), the vision workers end the
  trial by themselves (a TRIAL_ENDED decision by the system, saying why).
- One trial at a time: the newest SHADOW or CANARY decision made after the newest PRODUCTION
  one, unless a TRIAL_ENDED decision ends it (``ends``, unique: two workers that see the same
  failing canary end it once). Promoting the candidate ends its trial.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE lighthouse.model_decision DROP CONSTRAINT model_decision_role_check;
ALTER TABLE lighthouse.model_decision
    ADD CONSTRAINT model_decision_role_check
        CHECK (role IN ('PRODUCTION', 'SHADOW', 'CANARY', 'TRIAL_ENDED')),
    -- The share of frames the candidate analyses (chosen by the frame's digest, so a frame
    -- retried is chosen again), and for a canary the bound on the rejected share.
    ADD COLUMN share double precision CHECK (share > 0 AND share <= 1),
    ADD COLUMN rejected_bound double precision CHECK (rejected_bound > 0 AND rejected_bound < 1),
    ADD COLUMN min_reviewed integer CHECK (min_reviewed BETWEEN 1 AND 1000000),
    ADD COLUMN ends bigint UNIQUE REFERENCES lighthouse.model_decision (id),
    ADD CONSTRAINT model_decision_trial_share
        CHECK ((role IN ('SHADOW', 'CANARY')) = (share IS NOT NULL)),
    ADD CONSTRAINT model_decision_canary_bound
        CHECK ((role = 'CANARY') = (rejected_bound IS NOT NULL AND min_reviewed IS NOT NULL)),
    ADD CONSTRAINT model_decision_ends
        CHECK ((role = 'TRIAL_ENDED') = (ends IS NOT NULL));

-- A failing canary is ended by the vision workers, as the system, and by nothing else of it.
CREATE POLICY model_decision_rollback ON lighthouse.model_decision FOR INSERT WITH CHECK (
    lighthouse.current_kind() = 'system' AND role = 'TRIAL_ENDED'
    AND decided_by = lighthouse.current_subject());

-- The role an analysis played: production's, the canary's (both act on what they find), or the
-- shadow's (recorded, compared, acting on nothing).
ALTER TABLE lighthouse.frame_analysis ADD COLUMN role text NOT NULL DEFAULT 'PRODUCTION'
    CHECK (role IN ('PRODUCTION', 'CANARY', 'SHADOW'));

-- A version's analyses over a time, for a trial's comparison.
CREATE INDEX frame_analysis_version_idx
    ON lighthouse.frame_analysis (model, model_version, analysed_at);

ALTER TABLE lighthouse.detection DROP CONSTRAINT detection_outcome_check;
ALTER TABLE lighthouse.detection DROP CONSTRAINT detection_check;
ALTER TABLE lighthouse.detection
    ADD CONSTRAINT detection_outcome_check
        CHECK (outcome IN ('OPENED', 'ATTACHED', 'BELOW_THRESHOLD', 'SHADOW')) NOT VALID,
    ADD CONSTRAINT detection_incident_check
        CHECK ((outcome IN ('BELOW_THRESHOLD', 'SHADOW')) = (incident_id IS NULL)) NOT VALID;
ALTER TABLE lighthouse.detection VALIDATE CONSTRAINT detection_outcome_check;
ALTER TABLE lighthouse.detection VALIDATE CONSTRAINT detection_incident_check;
-- Shadow detections of a frame, beside production's, for the comparison.
CREATE INDEX detection_shadow_idx ON lighthouse.detection (frame_sha256, category)
    WHERE outcome = 'SHADOW';

-- A shadow's findings were never put before people: they get no review outcome (the
-- comparison judges them by the outcomes of production's findings on the same frames).
CREATE OR REPLACE FUNCTION lighthouse.review_new_detection() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
BEGIN
    IF NEW.outcome = 'SHADOW' THEN
        RETURN NULL;
    END IF;
    INSERT INTO lighthouse.detection_review (detection_id, incident_id, bureau_id, camera_id,
        model, model_version, prompt_version, category, confidence, outcome, detected_at)
    SELECT NEW.id, NEW.incident_id, NEW.bureau_id, NEW.camera_id, a.model, a.model_version,
           a.prompt_version, NEW.category, NEW.confidence,
           lighthouse.review_outcome(i.status, i.closing_reason), NEW.detected_at
    FROM lighthouse.frame_analysis a
    LEFT JOIN lighthouse.incident i ON i.id = NEW.incident_id
    WHERE a.id = NEW.analysis_id;
    RETURN NULL;
END;
$$;

-- How a canary fares, across every bureau (counts only): its detections since the decision
-- that people confirmed or rejected. Read by the vision workers, which may not read reviews.
CREATE FUNCTION lighthouse.canary_health(decision bigint)
RETURNS TABLE (confirmed bigint, rejected bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
    SELECT count(*) FILTER (WHERE r.outcome IN ('CONFIRMED', 'TRANSFERRED')),
           count(*) FILTER (WHERE r.outcome = 'REJECTED')
    FROM lighthouse.model_decision d
    JOIN lighthouse.detection_review r
      ON r.model = d.model AND r.model_version = d.version AND r.detected_at >= d.decided_at
    WHERE d.id = decision AND d.role = 'CANARY'
$$;
REVOKE ALL ON FUNCTION lighthouse.canary_health(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.canary_health(bigint) TO {role};
"""

DOWNGRADE = """
DROP FUNCTION lighthouse.canary_health(bigint);
CREATE OR REPLACE FUNCTION lighthouse.review_new_detection() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
BEGIN
    INSERT INTO lighthouse.detection_review (detection_id, incident_id, bureau_id, camera_id,
        model, model_version, prompt_version, category, confidence, outcome, detected_at)
    SELECT NEW.id, NEW.incident_id, NEW.bureau_id, NEW.camera_id, a.model, a.model_version,
           a.prompt_version, NEW.category, NEW.confidence,
           lighthouse.review_outcome(i.status, i.closing_reason), NEW.detected_at
    FROM lighthouse.frame_analysis a
    LEFT JOIN lighthouse.incident i ON i.id = NEW.incident_id
    WHERE a.id = NEW.analysis_id;
    RETURN NULL;
END;
$$;
DROP INDEX lighthouse.detection_shadow_idx;
ALTER TABLE lighthouse.detection DROP CONSTRAINT detection_incident_check;
ALTER TABLE lighthouse.detection DROP CONSTRAINT detection_outcome_check;
ALTER TABLE lighthouse.detection
    ADD CONSTRAINT detection_outcome_check
        CHECK (outcome IN ('OPENED', 'ATTACHED', 'BELOW_THRESHOLD')),
    ADD CONSTRAINT detection_check CHECK ((outcome = 'BELOW_THRESHOLD') = (incident_id IS NULL));
DROP INDEX lighthouse.frame_analysis_version_idx;
ALTER TABLE lighthouse.frame_analysis DROP COLUMN role;
DROP POLICY model_decision_rollback ON lighthouse.model_decision;
ALTER TABLE lighthouse.model_decision DROP CONSTRAINT model_decision_ends,
    DROP CONSTRAINT model_decision_canary_bound, DROP CONSTRAINT model_decision_trial_share,
    DROP COLUMN ends, DROP COLUMN min_reviewed, DROP COLUMN rejected_bound, DROP COLUMN share,
    DROP CONSTRAINT model_decision_role_check,
    ADD CONSTRAINT model_decision_role_check CHECK (role IN ('PRODUCTION'));
"""


def upgrade() -> None:
    execute_script(UPGRADE.format(role=app_role()))


def downgrade() -> None:
    execute_script(DOWNGRADE)
