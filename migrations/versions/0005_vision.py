"""The discover step: camera frames, their analysis by the vision model, the detections that
open or join incidents, the model registry, and the queue that carries frames to the workers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from pathlib import Path

from migrations.support import app_role, execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

VISION = """
-- A camera frame, stored once by the SHA-256 of its (metadata-free) bytes.
CREATE TABLE lighthouse.frame (
    sha256        bytea PRIMARY KEY CHECK (length(sha256) = 32),
    id            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    camera_id     bigint NOT NULL REFERENCES lighthouse.asset (id),
    bureau_id     integer NOT NULL REFERENCES lighthouse.bureau (id),
    media_type    text NOT NULL CHECK (media_type IN ('image/jpeg', 'image/png')),
    size_bytes    integer NOT NULL CHECK (size_bytes > 0),
    width         integer NOT NULL CHECK (width > 0),
    height        integer NOT NULL CHECK (height > 0),
    captured_at   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    uploaded_by   text NOT NULL,
    status        text NOT NULL DEFAULT 'QUEUED'
                  CHECK (status IN ('QUEUED', 'ANALYSED', 'FAILED')),
    analysed_at   timestamptz,
    -- Analyses that broke (not counting the serving tier being down); at the limit the frame
    -- is FAILED and its job held for an operator (a dead letter).
    failures      integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_failure  text CHECK (length(last_failure) <= 2000),
    -- What hangs off a frame belongs to the frame's bureau (composite keys below).
    UNIQUE (sha256, bureau_id)
);
CREATE INDEX frame_received_idx ON lighthouse.frame (received_at DESC, id DESC);
CREATE INDEX frame_camera_idx ON lighthouse.frame (camera_id, received_at DESC, id DESC);
CREATE INDEX frame_bureau_idx ON lighthouse.frame (bureau_id, received_at DESC, id DESC);

-- The model registry: the served models the workers used, and the prompts they asked with.
CREATE TABLE lighthouse.vision_model (
    name           text NOT NULL,
    version        text NOT NULL,
    first_used_at  timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);
CREATE TABLE lighthouse.vision_prompt (
    version      text PRIMARY KEY CHECK (length(version) BETWEEN 1 AND 64),
    text         text NOT NULL,
    schema       jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- One analysis of a frame by a model with a prompt: what came back, or why it failed.
CREATE TABLE lighthouse.frame_analysis (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    frame_sha256    bytea NOT NULL,
    bureau_id       integer NOT NULL,
    model           text NOT NULL,
    model_version   text NOT NULL,
    prompt_version  text NOT NULL REFERENCES lighthouse.vision_prompt (version),
    outcome         text NOT NULL CHECK (outcome IN ('FINDINGS', 'NOTHING', 'UNUSABLE')),
    failure         text CHECK (length(failure) <= 2000),
    raw_answer      text NOT NULL CHECK (length(raw_answer) <= 65536),
    latency_ms      integer NOT NULL CHECK (latency_ms >= 0),
    analysed_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (frame_sha256, model, model_version, prompt_version),
    FOREIGN KEY (frame_sha256, bureau_id) REFERENCES lighthouse.frame (sha256, bureau_id)
);

-- A finding: a category the model saw in a frame, with its confidence; above the category's
-- threshold it opened an incident or joined an open one nearby as evidence.
CREATE TABLE lighthouse.detection (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    analysis_id     bigint NOT NULL REFERENCES lighthouse.frame_analysis (id),
    frame_sha256    bytea NOT NULL,
    camera_id       bigint NOT NULL REFERENCES lighthouse.asset (id),
    bureau_id       integer NOT NULL,
    category        text NOT NULL REFERENCES lighthouse.incident_category (code),
    confidence      double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    note            text NOT NULL DEFAULT '' CHECK (length(note) <= 200),
    latitude        double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude       double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    outcome         text NOT NULL CHECK (outcome IN ('OPENED', 'ATTACHED', 'BELOW_THRESHOLD')),
    incident_id     bigint REFERENCES lighthouse.incident (id),
    detected_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome = 'BELOW_THRESHOLD') = (incident_id IS NULL)),
    UNIQUE (analysis_id, category),
    FOREIGN KEY (frame_sha256, bureau_id) REFERENCES lighthouse.frame (sha256, bureau_id)
);
CREATE INDEX detection_incident_idx ON lighthouse.detection (incident_id, id)
    WHERE incident_id IS NOT NULL;
CREATE INDEX detection_frame_idx ON lighthouse.detection (frame_sha256);
CREATE INDEX detection_time_idx ON lighthouse.detection (detected_at DESC, id DESC);
CREATE INDEX detection_bureau_idx ON lighthouse.detection (bureau_id, id DESC);
-- Finding an open incident of a category near a point, to join instead of opening another.
CREATE INDEX incident_open_category_idx ON lighthouse.incident (category, reported_at)
    WHERE status <> 'CLOSED';

CREATE TRIGGER frame_analysis_append_only
    BEFORE UPDATE OR DELETE ON lighthouse.frame_analysis
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();
CREATE TRIGGER detection_append_only
    BEFORE UPDATE OR DELETE ON lighthouse.detection
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();

-- The nearest open incident of a category near a point, reported since a moment: a camera's
-- finding joins it instead of opening another, whichever bureau may see it (definer).
CREATE FUNCTION lighthouse.nearby_open_incident(
    wanted text, at_latitude float8, at_longitude float8, within_meters float8,
    since timestamptz)
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
    -- Parameters are named apart from incident's columns (a column wins a name clash).
    SELECT i.id FROM lighthouse.incident i
    WHERE i.category = wanted AND i.status <> 'CLOSED' AND i.reported_at >= since
      AND public.earth_box(public.ll_to_earth(at_latitude, at_longitude), within_meters)
          @> public.ll_to_earth(i.latitude, i.longitude)
      AND public.earth_distance(public.ll_to_earth(at_latitude, at_longitude),
                                public.ll_to_earth(i.latitude, i.longitude)) <= within_meters
    ORDER BY public.earth_distance(public.ll_to_earth(at_latitude, at_longitude),
                                   public.ll_to_earth(i.latitude, i.longitude)), i.id
    LIMIT 1
$$;

-- New detections are announced on commit, for the detections subscription.
CREATE FUNCTION lighthouse.announce_detection() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lighthouse_detections', json_build_object(
        'id', NEW.id, 'bureau_id', NEW.bureau_id, 'incident_id', NEW.incident_id,
        'category', NEW.category)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER detection_announce AFTER INSERT ON lighthouse.detection
    FOR EACH ROW EXECUTE FUNCTION lighthouse.announce_detection();

-- Visibility: a frame and what was found in it belong to the camera's bureau, and to whoever
-- sees an incident the frame is evidence of (row-level security of incident, nested).
-- Whether a frame is evidence of an incident the caller sees (the incident rule, stated as
-- incident_read states it). A definer function: frame's policy cannot read detection directly
-- (PostgreSQL refuses a policy that reaches its own table again). Costly, so the cheap tests of
-- frame_read are made first.
CREATE FUNCTION lighthouse.frame_evidence_visible(frame bytea) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER COST 1000 SET search_path = lighthouse, public, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM lighthouse.detection d JOIN lighthouse.incident i ON i.id = d.incident_id
        WHERE d.frame_sha256 = frame
          AND lighthouse.incident_visible(i.responsible_bureau_id, i.involved_bureau_ids))
$$;

ALTER TABLE lighthouse.frame ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.frame FORCE ROW LEVEL SECURITY;
CREATE POLICY frame_read ON lighthouse.frame FOR SELECT USING (
    (SELECT lighthouse.has_scope('incidents:read')) AND (
        bureau_id = (SELECT lighthouse.current_bureau())
        OR (SELECT lighthouse.reads_all_incidents())
        OR lighthouse.frame_evidence_visible(sha256)));
-- A frame is sent by its camera's own bureau (whatever the sender may read of the assets).
CREATE FUNCTION lighthouse.camera_bureau(camera bigint) RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
    SELECT bureau_id FROM lighthouse.asset WHERE id = camera AND kind = 'CAMERA'
$$;
-- A camera gateway names its cameras by code.
CREATE FUNCTION lighthouse.camera_by_code(wanted text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
    SELECT id FROM lighthouse.asset WHERE code = wanted AND kind = 'CAMERA'
$$;
CREATE POLICY frame_create ON lighthouse.frame FOR INSERT WITH CHECK (
    lighthouse.has_scope('incidents:write') AND lighthouse.current_kind() IN ('staff', 'service')
    AND bureau_id = lighthouse.current_bureau()
    AND lighthouse.camera_bureau(camera_id) = lighthouse.current_bureau());
CREATE POLICY frame_analysed ON lighthouse.frame FOR UPDATE USING (
    (SELECT lighthouse.has_scope('incidents:write'))
    AND bureau_id = (SELECT lighthouse.current_bureau()));

ALTER TABLE lighthouse.frame_analysis ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.frame_analysis FORCE ROW LEVEL SECURITY;
CREATE POLICY frame_analysis_read ON lighthouse.frame_analysis FOR SELECT USING (
    EXISTS (SELECT 1 FROM lighthouse.frame f WHERE f.sha256 = frame_sha256));
-- The composite key makes the analysis's bureau its frame's: the caller's own frames only.
CREATE POLICY frame_analysis_create ON lighthouse.frame_analysis FOR INSERT WITH CHECK (
    (SELECT lighthouse.has_scope('incidents:write'))
    AND bureau_id = (SELECT lighthouse.current_bureau()));

ALTER TABLE lighthouse.detection ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.detection FORCE ROW LEVEL SECURITY;
CREATE POLICY detection_read ON lighthouse.detection FOR SELECT USING (
    (SELECT lighthouse.has_scope('incidents:read')) AND (
        bureau_id = (SELECT lighthouse.current_bureau())
        OR (SELECT lighthouse.reads_all_incidents())
        OR EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id)));
-- Inside definer functions (frame_evidence_visible), as incident_read_definer does for incident.
CREATE POLICY detection_read_definer ON lighthouse.detection FOR SELECT USING (
    current_user <> session_user);
CREATE POLICY detection_create ON lighthouse.detection FOR INSERT WITH CHECK (
    (SELECT lighthouse.has_scope('incidents:write'))
    AND bureau_id = (SELECT lighthouse.current_bureau()));
"""

GRANTS = """
GRANT SELECT, INSERT ON lighthouse.frame, lighthouse.frame_analysis, lighthouse.detection TO {role};
GRANT UPDATE (status, analysed_at, failures, last_failure) ON lighthouse.frame TO {role};
GRANT SELECT, INSERT, UPDATE ON lighthouse.vision_model, lighthouse.vision_prompt TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON lighthouse.pgqueuer, lighthouse.pgqueuer_log,
    lighthouse.pgqueuer_schedules, lighthouse.pgqueuer_statistics TO {role};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA lighthouse TO {role};
REVOKE ALL ON FUNCTION lighthouse.camera_bureau FROM PUBLIC;
REVOKE ALL ON FUNCTION lighthouse.camera_by_code FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.camera_by_code TO {role};
REVOKE ALL ON FUNCTION lighthouse.nearby_open_incident FROM PUBLIC;
REVOKE ALL ON FUNCTION lighthouse.frame_evidence_visible FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.frame_evidence_visible TO {role};
GRANT EXECUTE ON FUNCTION lighthouse.nearby_open_incident TO {role};
GRANT EXECUTE ON FUNCTION lighthouse.camera_bureau TO {role};
"""


def upgrade() -> None:
    execute_script(VISION)
    # The frames queue: PgQueuer's own tables (pgqueuer 1.6.0's install DDL, kept beside this
    # revision so that the schema never changes with a library upgrade), in this schema.
    queue = (Path(__file__).with_name("0005_pgqueuer_1_6_0.sql")).read_text()
    execute_script("SET LOCAL search_path = lighthouse;\n" + queue)
    execute_script(GRANTS.format(role=app_role()))


def downgrade() -> None:
    # The upgrade granted USAGE on ALL sequences, those of 0001 too: take that back from them.
    execute_script(f"REVOKE USAGE ON ALL SEQUENCES IN SCHEMA lighthouse FROM {app_role()}")
    execute_script("""
        DROP TABLE lighthouse.detection, lighthouse.frame_analysis, lighthouse.vision_prompt,
            lighthouse.vision_model, lighthouse.frame;
        DROP FUNCTION lighthouse.announce_detection();
        DROP FUNCTION lighthouse.camera_bureau(bigint);
        DROP FUNCTION lighthouse.camera_by_code(text);
        DROP FUNCTION lighthouse.frame_evidence_visible(bytea);
        DROP FUNCTION lighthouse.nearby_open_incident(text, float8, float8, float8, timestamptz);
        DROP INDEX lighthouse.incident_open_category_idx;
        DROP TABLE lighthouse.pgqueuer, lighthouse.pgqueuer_log, lighthouse.pgqueuer_schedules,
            lighthouse.pgqueuer_statistics;
        DROP FUNCTION lighthouse.fn_pgqueuer_changed();
        DROP TYPE lighthouse.pgqueuer_status;
    """)
