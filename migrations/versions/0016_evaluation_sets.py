"""Evaluation sets: frames a person labelled with the categories they show, and the answers of
model versions over them.

- ``evaluation_set``: a named, versioned set of one bureau's frames (its visibility is theirs),
  from a manifest or from that bureau's reviewed detections. A new version of a name is a new
  set; none is ever changed.
- ``evaluation_item``: a frame of the set and its labels (possibly none: a frame showing none of
  the set's categories). Frames registered for a set are stored like any frame; those that were
  not live frames already are ``HELD``: kept, never queued for live analysis.
- ``evaluation_run``: one model version (with one prompt version) over one set, and
  ``evaluation_answer``: its answer on each frame, recorded as it comes, so a run that stopped
  resumes where it was. The run's figures are computed from the answers and labels on reading
  (``api.domain.evaluation``).

Everything here is visible as the set's bureau's frames are: its own staff and services, and
those who read every incident; written by its staff granted ``models:admin`` (sets, runs) and by
its vision worker (answers).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE lighthouse.frame DROP CONSTRAINT frame_status_check;
ALTER TABLE lighthouse.frame ADD CONSTRAINT frame_status_check
    CHECK (status IN ('QUEUED', 'ANALYSED', 'FAILED', 'HELD')) NOT VALID;
ALTER TABLE lighthouse.frame VALIDATE CONSTRAINT frame_status_check;

CREATE TABLE lighthouse.evaluation_set (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{{0,63}}$'),
    version      integer NOT NULL CHECK (version >= 1),
    bureau_id    integer NOT NULL REFERENCES lighthouse.bureau (id),
    source       text NOT NULL CHECK (source IN ('MANIFEST', 'REVIEWS')),
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    -- The categories the labels speak of: a frame's label set is complete for these.
    categories   text[] NOT NULL CHECK (cardinality(categories) BETWEEN 1 AND 100),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- A bureau's names: another bureau may have a set of the same name.
    UNIQUE (bureau_id, name, version)
);
CREATE TABLE lighthouse.evaluation_item (
    set_id        bigint NOT NULL REFERENCES lighthouse.evaluation_set (id),
    frame_sha256  bytea NOT NULL,
    bureau_id     integer NOT NULL,
    categories    text[] NOT NULL,
    PRIMARY KEY (set_id, frame_sha256),
    FOREIGN KEY (frame_sha256, bureau_id) REFERENCES lighthouse.frame (sha256, bureau_id)
);
CREATE TABLE lighthouse.evaluation_run (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    set_id          bigint NOT NULL REFERENCES lighthouse.evaluation_set (id),
    bureau_id       integer NOT NULL REFERENCES lighthouse.bureau (id),
    model           text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    model_version   text NOT NULL CHECK (length(model_version) BETWEEN 1 AND 64),
    prompt_version  text NOT NULL REFERENCES lighthouse.vision_prompt (version),
    started_by      text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    -- One run per version, prompt and set: running it again resumes it.
    UNIQUE (set_id, model, model_version, prompt_version)
);
CREATE TABLE lighthouse.evaluation_answer (
    run_id        bigint NOT NULL REFERENCES lighthouse.evaluation_run (id),
    frame_sha256  bytea NOT NULL,
    bureau_id     integer NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('FINDINGS', 'NOTHING', 'UNUSABLE')),
    failure       text CHECK (length(failure) <= 2000),
    raw_answer    text NOT NULL CHECK (length(raw_answer) <= 65536),
    -- {{category: confidence}} of what the model named.
    findings      jsonb NOT NULL,
    latency_ms    integer NOT NULL CHECK (latency_ms >= 0),
    answered_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, frame_sha256),
    FOREIGN KEY (frame_sha256, bureau_id) REFERENCES lighthouse.frame (sha256, bureau_id)
);
CREATE TRIGGER evaluation_set_append_only BEFORE UPDATE OR DELETE ON lighthouse.evaluation_set
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();
CREATE TRIGGER evaluation_item_append_only BEFORE UPDATE OR DELETE ON lighthouse.evaluation_item
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();
CREATE TRIGGER evaluation_run_append_only BEFORE UPDATE OR DELETE ON lighthouse.evaluation_run
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();
CREATE TRIGGER evaluation_answer_append_only
    BEFORE UPDATE OR DELETE ON lighthouse.evaluation_answer
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();

ALTER TABLE lighthouse.evaluation_set ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.evaluation_set FORCE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.evaluation_item ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.evaluation_item FORCE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.evaluation_run ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.evaluation_run FORCE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.evaluation_answer ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.evaluation_answer FORCE ROW LEVEL SECURITY;
CREATE POLICY evaluation_set_read ON lighthouse.evaluation_set FOR SELECT USING (
    (SELECT lighthouse.has_scope('incidents:read')) AND (
        bureau_id = (SELECT lighthouse.current_bureau())
        OR (SELECT lighthouse.reads_all_incidents())));
CREATE POLICY evaluation_item_read ON lighthouse.evaluation_item FOR SELECT USING (
    (SELECT lighthouse.has_scope('incidents:read')) AND (
        bureau_id = (SELECT lighthouse.current_bureau())
        OR (SELECT lighthouse.reads_all_incidents())));
CREATE POLICY evaluation_run_read ON lighthouse.evaluation_run FOR SELECT USING (
    (SELECT lighthouse.has_scope('incidents:read')) AND (
        bureau_id = (SELECT lighthouse.current_bureau())
        OR (SELECT lighthouse.reads_all_incidents())));
CREATE POLICY evaluation_answer_read ON lighthouse.evaluation_answer FOR SELECT USING (
    (SELECT lighthouse.has_scope('incidents:read')) AND (
        bureau_id = (SELECT lighthouse.current_bureau())
        OR (SELECT lighthouse.reads_all_incidents())));
-- Sets and runs: the bureau's own model officers; answers: its officers or its vision worker.
CREATE POLICY evaluation_set_create ON lighthouse.evaluation_set FOR INSERT WITH CHECK (
    lighthouse.has_scope('models:admin') AND lighthouse.current_kind() = 'staff'
    AND bureau_id = lighthouse.current_bureau() AND created_by = lighthouse.current_subject());
CREATE POLICY evaluation_item_create ON lighthouse.evaluation_item FOR INSERT WITH CHECK (
    lighthouse.has_scope('models:admin') AND lighthouse.current_kind() = 'staff'
    AND bureau_id = lighthouse.current_bureau());
CREATE POLICY evaluation_run_create ON lighthouse.evaluation_run FOR INSERT WITH CHECK (
    lighthouse.has_scope('models:admin') AND lighthouse.current_kind() = 'staff'
    AND bureau_id = lighthouse.current_bureau() AND started_by = lighthouse.current_subject());
CREATE POLICY evaluation_answer_create ON lighthouse.evaluation_answer FOR INSERT WITH CHECK (
    (lighthouse.has_scope('models:admin') OR lighthouse.has_scope('incidents:write'))
    AND lighthouse.current_kind() IN ('staff', 'service')
    AND bureau_id = lighthouse.current_bureau());
GRANT SELECT, INSERT ON lighthouse.evaluation_set, lighthouse.evaluation_item,
    lighthouse.evaluation_run, lighthouse.evaluation_answer TO {role};
"""

DOWNGRADE = """
DROP TABLE lighthouse.evaluation_answer;
DROP TABLE lighthouse.evaluation_run;
DROP TABLE lighthouse.evaluation_item;
DROP TABLE lighthouse.evaluation_set;
ALTER TABLE lighthouse.frame DROP CONSTRAINT frame_status_check;
ALTER TABLE lighthouse.frame ADD CONSTRAINT frame_status_check
    CHECK (status IN ('QUEUED', 'ANALYSED', 'FAILED'));
"""


def upgrade() -> None:
    execute_script(UPGRADE.format(role=app_role()))


def downgrade() -> None:
    execute_script(DOWNGRADE)
