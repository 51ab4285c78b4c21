"""Misses of the threshold kept up as incidents move, not counted on reading.

A detection under its category's threshold opened nothing; if its place then got a confirmed
incident of that category (within the deduplication distance and time), the threshold hid a
real finding: a miss of the threshold. Counting that on reading probed the incidents around
every below-threshold detection (160 s over 400,000 of them, bench/quality.py); here each
detection's review row records the incident that makes it a miss (``missed_by``), kept current
by triggers as the rest of ``detection_review`` is:

- an incident that becomes right (confirmed or transferred: ``finding_right``) marks the
  below-threshold detections whose window holds its report and are not marked yet;
- one that stops being right hands its detections to another right incident, or to none;
- a new below-threshold detection looks once for a right incident reported after it.

The window is the detection's own: the deduplication distance and time the worker recorded it
under (``detection.dedup_meters`` and ``dedup_seconds``, stamped from its settings), so a later
change of the settings does not change what earlier detections count as.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.support import execute_script

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

UPGRADE = """
-- For the index below: GiST over a category, times and a place at once.
CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;

-- The deduplication window each detection was recorded under (defaults: the settings' own).
-- The bounds are the settings' (LIGHTHOUSE_VISION_DEDUP_METERS, _HOURS).
ALTER TABLE lighthouse.detection
    ADD COLUMN dedup_meters double precision NOT NULL DEFAULT 50
        CHECK (dedup_meters > 0 AND dedup_meters <= 500),
    ADD COLUMN dedup_seconds double precision NOT NULL DEFAULT 86400
        CHECK (dedup_seconds > 0 AND dedup_seconds <= 30 * 86400);

-- Only a below-threshold detection has a place and a window here, and only it can be missed.
ALTER TABLE lighthouse.detection_review
    ADD COLUMN latitude double precision,
    ADD COLUMN longitude double precision,
    ADD COLUMN miss_meters double precision,
    ADD COLUMN miss_until timestamptz,
    ADD COLUMN missed_by bigint REFERENCES lighthouse.incident (id),
    ADD CONSTRAINT detection_review_miss_window CHECK (
        (outcome = 'BELOW_THRESHOLD') = (latitude IS NOT NULL AND longitude IS NOT NULL
                                         AND miss_meters IS NOT NULL AND miss_until IS NOT NULL)),
    ADD CONSTRAINT detection_review_missed_below CHECK (
        missed_by IS NULL OR outcome = 'BELOW_THRESHOLD');

-- Whether an incident's state says the finding was right (review_outcome's CONFIRMED or
-- TRANSFERRED: the category was there, whoever's business it was).
CREATE FUNCTION lighthouse.finding_right(status text, closing_reason text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT status NOT IN ('DETECTED', 'CLOSED')
        OR coalesce(closing_reason IN ('FIXED', 'TRANSFERRED', 'NOT_RESPONSIBLE'), false)
$$;

-- A right incident of the category reported within the window after a detection, if any
-- (the earliest). The state is written out as columns, not through finding_right, so that the
-- planner counts the rows it keeps.
CREATE FUNCTION lighthouse.threshold_miss(
    wanted text, at_latitude float8, at_longitude float8, detected timestamptz,
    within_meters float8, until timestamptz)
RETURNS bigint
LANGUAGE sql STABLE SET search_path = lighthouse, public, pg_temp AS $$
    SELECT i.id FROM lighthouse.incident i
    WHERE i.category = wanted
      AND public.earth_box(public.ll_to_earth(at_latitude, at_longitude), within_meters)
          @> public.ll_to_earth(i.latitude, i.longitude)
      AND public.earth_distance(public.ll_to_earth(at_latitude, at_longitude),
                                public.ll_to_earth(i.latitude, i.longitude)) <= within_meters
      AND i.reported_at >= detected AND i.reported_at < until
      AND (i.status NOT IN ('DETECTED', 'CLOSED')
           OR i.closing_reason IN ('FIXED', 'TRANSFERRED', 'NOT_RESPONSIBLE'))
    ORDER BY i.reported_at, i.id
    LIMIT 1
$$;
REVOKE ALL ON FUNCTION lighthouse.threshold_miss FROM PUBLIC;

-- The detections a report can still make misses: under the threshold, not missed yet, found by
-- category, window and reach together (each row's reach is the box of its own distance, so the
-- search takes the report's point, not a box of the greatest distance).
CREATE INDEX detection_review_unmissed_idx ON lighthouse.detection_review
    USING gist (category, miss_until, detected_at,
                public.earth_box(public.ll_to_earth(latitude, longitude), miss_meters))
    WHERE outcome = 'BELOW_THRESHOLD' AND missed_by IS NULL;
CREATE INDEX detection_review_missed_by_idx ON lighthouse.detection_review (missed_by)
    WHERE missed_by IS NOT NULL;

CREATE OR REPLACE FUNCTION lighthouse.review_new_detection() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
DECLARE
    below boolean := NEW.incident_id IS NULL;
    until timestamptz := NEW.detected_at + make_interval(secs => NEW.dedup_seconds);
BEGIN
    IF NEW.outcome = 'SHADOW' THEN
        RETURN NULL;
    END IF;
    INSERT INTO lighthouse.detection_review (detection_id, incident_id, bureau_id, camera_id,
        model, model_version, prompt_version, category, confidence, outcome, detected_at,
        latitude, longitude, miss_meters, miss_until, missed_by)
    SELECT NEW.id, NEW.incident_id, NEW.bureau_id, NEW.camera_id, a.model, a.model_version,
           a.prompt_version, NEW.category, NEW.confidence,
           lighthouse.review_outcome(i.status, i.closing_reason), NEW.detected_at,
           CASE WHEN below THEN NEW.latitude END, CASE WHEN below THEN NEW.longitude END,
           CASE WHEN below THEN NEW.dedup_meters END, CASE WHEN below THEN until END,
           CASE WHEN below THEN lighthouse.threshold_miss(NEW.category, NEW.latitude,
               NEW.longitude, NEW.detected_at, NEW.dedup_meters, until) END
    FROM lighthouse.frame_analysis a
    LEFT JOIN lighthouse.incident i ON i.id = NEW.incident_id
    WHERE a.id = NEW.analysis_id;
    RETURN NULL;
END;
$$;

-- Run only when an incident becomes right or stops being right (see the triggers' WHEN).
CREATE FUNCTION lighthouse.review_threshold_misses() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
BEGIN
    IF lighthouse.finding_right(NEW.status, NEW.closing_reason) THEN
        UPDATE lighthouse.detection_review r SET missed_by = NEW.id
        WHERE r.outcome = 'BELOW_THRESHOLD' AND r.missed_by IS NULL
          AND r.category = NEW.category
          AND r.miss_until > NEW.reported_at AND r.detected_at <= NEW.reported_at
          AND public.earth_box(public.ll_to_earth(r.latitude, r.longitude), r.miss_meters)
              @> public.ll_to_earth(NEW.latitude, NEW.longitude)
          AND public.earth_distance(public.ll_to_earth(NEW.latitude, NEW.longitude),
                                    public.ll_to_earth(r.latitude, r.longitude)) <= r.miss_meters;
    ELSE
        UPDATE lighthouse.detection_review r
        SET missed_by = lighthouse.threshold_miss(r.category, r.latitude, r.longitude,
                                                  r.detected_at, r.miss_meters, r.miss_until)
        WHERE r.missed_by = NEW.id;
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION lighthouse.review_threshold_misses() FROM PUBLIC;
CREATE TRIGGER incident_threshold_misses_new AFTER INSERT ON lighthouse.incident
    FOR EACH ROW WHEN (lighthouse.finding_right(NEW.status, NEW.closing_reason))
    EXECUTE FUNCTION lighthouse.review_threshold_misses();
CREATE TRIGGER incident_threshold_misses AFTER UPDATE OF status, closing_reason
    ON lighthouse.incident FOR EACH ROW
    WHEN (lighthouse.finding_right(OLD.status, OLD.closing_reason)
          <> lighthouse.finding_right(NEW.status, NEW.closing_reason))
    EXECUTE FUNCTION lighthouse.review_threshold_misses();

-- The detections recorded before this revision: their window is the defaults'.
UPDATE lighthouse.detection_review r
SET latitude = d.latitude, longitude = d.longitude, miss_meters = d.dedup_meters,
    miss_until = r.detected_at + make_interval(secs => d.dedup_seconds)
FROM lighthouse.detection d
WHERE d.id = r.detection_id AND r.outcome = 'BELOW_THRESHOLD';
UPDATE lighthouse.detection_review r
SET missed_by = lighthouse.threshold_miss(r.category, r.latitude, r.longitude, r.detected_at,
                                          r.miss_meters, r.miss_until)
WHERE r.outcome = 'BELOW_THRESHOLD';
"""

DOWNGRADE = """
DROP TRIGGER incident_threshold_misses ON lighthouse.incident;
DROP TRIGGER incident_threshold_misses_new ON lighthouse.incident;
DROP FUNCTION lighthouse.review_threshold_misses();
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
DROP FUNCTION lighthouse.threshold_miss;
DROP FUNCTION lighthouse.finding_right(text, text);
ALTER TABLE lighthouse.detection_review DROP COLUMN missed_by, DROP COLUMN miss_until,
    DROP COLUMN miss_meters, DROP COLUMN longitude, DROP COLUMN latitude;
ALTER TABLE lighthouse.detection DROP COLUMN dedup_seconds, DROP COLUMN dedup_meters;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
