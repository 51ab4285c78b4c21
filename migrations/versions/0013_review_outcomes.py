"""Review outcomes: what people did with each detection, the ground truth of model quality.

Every detection gets one row in ``detection_review``, written when the detection is recorded
and kept current by a trigger on the incident it opened or joined: a dispatcher who verifies,
dispatches or fixes the incident confirms the finding; one who closes it as a false positive
rejects it; closed as a duplicate, or as another body's business (transferred, not
responsible), it is counted apart. Never written by hand (the application role may only read
it, under the same row security as detections), and the model, version, prompt, category and
confidence are copied in so that quality is counted from this one table.

A camera may record how far it sees (``asset.coverage_meters``): an incident people reported
within it, while the camera's frames were being analysed, tells whether a model version missed
what was there (``api.repositories.quality``).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = """
-- How far a camera sees: incidents reported within it are what its frames should have shown.
ALTER TABLE lighthouse.asset ADD COLUMN coverage_meters double precision
    CHECK (coverage_meters IS NULL
           OR (coverage_meters > 0 AND coverage_meters <= 5000 AND kind = 'CAMERA'));

-- The outcome an incident's state gives the detections it holds (the latest state wins: a
-- verified incident later closed as a false positive was rejected).
CREATE FUNCTION lighthouse.review_outcome(status text, closing_reason text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN status IS NULL THEN 'BELOW_THRESHOLD'
        WHEN status = 'DETECTED' THEN 'PENDING'
        WHEN status <> 'CLOSED' OR closing_reason = 'FIXED' THEN 'CONFIRMED'
        WHEN closing_reason = 'FALSE_POSITIVE' THEN 'REJECTED'
        WHEN closing_reason = 'DUPLICATE' THEN 'DUPLICATE'
        ELSE 'TRANSFERRED'
    END
$$;

CREATE TABLE lighthouse.detection_review (
    detection_id    bigint PRIMARY KEY REFERENCES lighthouse.detection (id),
    incident_id     bigint REFERENCES lighthouse.incident (id),
    bureau_id       integer NOT NULL REFERENCES lighthouse.bureau (id),
    camera_id       bigint NOT NULL REFERENCES lighthouse.asset (id),
    model           text NOT NULL,
    model_version   text NOT NULL,
    prompt_version  text NOT NULL,
    category        text NOT NULL REFERENCES lighthouse.incident_category (code),
    confidence      double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    outcome         text NOT NULL CHECK (outcome IN ('BELOW_THRESHOLD', 'PENDING', 'CONFIRMED',
                        'REJECTED', 'DUPLICATE', 'TRANSFERRED')),
    detected_at     timestamptz NOT NULL,
    -- When people last changed the outcome (null while nobody has).
    reviewed_at     timestamptz,
    CHECK ((outcome = 'BELOW_THRESHOLD') = (incident_id IS NULL))
);
CREATE INDEX detection_review_incident_idx ON lighthouse.detection_review (incident_id)
    WHERE incident_id IS NOT NULL;
CREATE INDEX detection_review_version_idx
    ON lighthouse.detection_review (model, model_version, prompt_version, category);
CREATE INDEX detection_review_bureau_idx ON lighthouse.detection_review (bureau_id);

-- Written by the owner's functions below only (the triggers run them as the owner: a worker
-- recording a detection, or a dispatcher closing an incident, need no right on this table).
CREATE FUNCTION lighthouse.review_new_detection() RETURNS trigger
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
CREATE TRIGGER detection_review_new AFTER INSERT ON lighthouse.detection
    FOR EACH ROW EXECUTE FUNCTION lighthouse.review_new_detection();

-- One indexed update per change of an incident's state, and none when the outcome stays.
CREATE FUNCTION lighthouse.review_incident_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
DECLARE
    outcome_now text := lighthouse.review_outcome(NEW.status, NEW.closing_reason);
BEGIN
    UPDATE lighthouse.detection_review SET outcome = outcome_now, reviewed_at = now()
    WHERE incident_id = NEW.id AND outcome <> outcome_now;
    RETURN NULL;
END;
$$;
CREATE TRIGGER incident_review_change AFTER UPDATE OF status, closing_reason
    ON lighthouse.incident FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.closing_reason IS DISTINCT FROM NEW.closing_reason)
    EXECUTE FUNCTION lighthouse.review_incident_change();
REVOKE ALL ON FUNCTION lighthouse.review_new_detection() FROM PUBLIC;
REVOKE ALL ON FUNCTION lighthouse.review_incident_change() FROM PUBLIC;

-- The detections recorded before this revision.
INSERT INTO lighthouse.detection_review (detection_id, incident_id, bureau_id, camera_id, model,
    model_version, prompt_version, category, confidence, outcome, detected_at)
SELECT d.id, d.incident_id, d.bureau_id, d.camera_id, a.model, a.model_version,
       a.prompt_version, d.category, d.confidence,
       lighthouse.review_outcome(i.status, i.closing_reason), d.detected_at
FROM lighthouse.detection d
JOIN lighthouse.frame_analysis a ON a.id = d.analysis_id
LEFT JOIN lighthouse.incident i ON i.id = d.incident_id;

-- Visible as the detection is: the camera's bureau, those who read every incident, and whoever
-- sees the incident the detection opened or joined.
ALTER TABLE lighthouse.detection_review ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.detection_review FORCE ROW LEVEL SECURITY;
CREATE POLICY detection_review_read ON lighthouse.detection_review FOR SELECT USING (
    (SELECT lighthouse.has_scope('incidents:read')) AND (
        bureau_id = (SELECT lighthouse.current_bureau())
        OR (SELECT lighthouse.reads_all_incidents())
        OR EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id)));
-- The triggers' functions run as the schema owner, which row-level security binds too: these
-- let them, and nothing else, write the reviews and read the analyses they copy from.
CREATE POLICY detection_review_derived ON lighthouse.detection_review FOR ALL
    USING (current_user <> session_user) WITH CHECK (current_user <> session_user);
CREATE POLICY frame_analysis_read_definer ON lighthouse.frame_analysis FOR SELECT
    USING (current_user <> session_user);
GRANT SELECT ON lighthouse.detection_review TO {role};

-- The city's dashboards: detections by version, prompt, category and review outcome, across
-- every bureau (counts only, as operations_gauges gives them).
CREATE FUNCTION lighthouse.quality_gauges()
RETURNS TABLE (model text, model_version text, prompt_version text, category text,
               outcome text, detections bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
    SELECT model, model_version, prompt_version, category, outcome, count(*)
    FROM lighthouse.detection_review
    GROUP BY 1, 2, 3, 4, 5
$$;
REVOKE ALL ON FUNCTION lighthouse.quality_gauges() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.quality_gauges() TO {role};
"""

DOWNGRADE = """
DROP FUNCTION lighthouse.quality_gauges();
DROP POLICY frame_analysis_read_definer ON lighthouse.frame_analysis;
DROP TRIGGER incident_review_change ON lighthouse.incident;
DROP TRIGGER detection_review_new ON lighthouse.detection;
DROP TABLE lighthouse.detection_review;
DROP FUNCTION lighthouse.review_incident_change();
DROP FUNCTION lighthouse.review_new_detection();
DROP FUNCTION lighthouse.review_outcome(text, text);
ALTER TABLE lighthouse.asset DROP COLUMN coverage_meters;
"""


def upgrade() -> None:
    execute_script(UPGRADE.format(role=app_role()))


def downgrade() -> None:
    execute_script(DOWNGRADE)
