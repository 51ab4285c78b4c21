"""Licences name model versions, and licensees read the model cards of what they license.

``licence_model_version`` pins, for a model a licence names, the version the city licensed
(issued as ``NAME@VERSION``; a model named without a version is licensed as served, and has no
card). ``model_card`` is what the city publishes about a model version: the evaluation run it
rests on, the set's name, version, size and categories (never its frames) and the figures
measured, frozen when a model officer publishes it. Cards are never changed; a newer card for
the same version supersedes an older one.

Who reads a card: the city's model officers (models:admin) and licensing officers and auditors
(licensing:admin, usage:read) all of them; a licensee's client the cards of the versions a
licence of its company pins. The run a card rests on is checked by the service, as the officer
sees it; the table holds no reference a licensee could follow to the bureau's frames.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE lighthouse.licence_model_version (
    licence_id  integer NOT NULL REFERENCES lighthouse.licence (id),
    model       text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    version     text NOT NULL CHECK (version ~ '^[A-Za-z0-9][A-Za-z0-9._-]{{0,62}}$'),
    PRIMARY KEY (licence_id, model)
);
ALTER TABLE lighthouse.licence_model_version ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.licence_model_version FORCE ROW LEVEL SECURITY;
-- As visible as the licence it belongs to; written with the licence, by licensing officers.
CREATE POLICY licence_model_version_read ON lighthouse.licence_model_version FOR SELECT USING (
    EXISTS (SELECT 1 FROM lighthouse.licence l WHERE l.id = licence_id));
CREATE POLICY licence_model_version_issue ON lighthouse.licence_model_version FOR INSERT
    WITH CHECK (lighthouse.current_kind() = 'staff' AND lighthouse.has_scope('licensing:admin'));
GRANT SELECT, INSERT ON lighthouse.licence_model_version TO {role};

CREATE TABLE lighthouse.model_card (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model          text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    version        text NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
    prompt_version text NOT NULL,
    run_id         bigint NOT NULL UNIQUE REFERENCES lighthouse.evaluation_run (id),
    -- What it was evaluated on: the set by name, never its frames.
    set_name       text NOT NULL,
    set_version    integer NOT NULL,
    set_frames     integer NOT NULL CHECK (set_frames >= 0),
    categories     text[] NOT NULL,
    -- Per category: the threshold, labelled frames, precision, recall and F1 with intervals.
    figures        jsonb NOT NULL CHECK (jsonb_typeof(figures) = 'array'),
    summary        text NOT NULL CHECK (length(summary) <= 2000),
    published_by   text NOT NULL,
    published_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_card_version_idx ON lighthouse.model_card (model, version, id DESC);
CREATE TRIGGER model_card_append_only
    BEFORE UPDATE OR DELETE ON lighthouse.model_card
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();
ALTER TABLE lighthouse.model_card ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.model_card FORCE ROW LEVEL SECURITY;
CREATE POLICY model_card_read ON lighthouse.model_card FOR SELECT USING (
    (lighthouse.current_kind() = 'staff' AND lighthouse.has_scope('models:admin'))
    OR lighthouse.reads_all_licences()
    OR (lighthouse.reads_own_licences() AND EXISTS (
        SELECT 1 FROM lighthouse.licence_model_version v
        JOIN lighthouse.licence l ON l.id = v.licence_id
        WHERE l.licensee_id = lighthouse.current_licensee()
          AND v.model = model_card.model AND v.version = model_card.version)));
CREATE POLICY model_card_publish ON lighthouse.model_card FOR INSERT WITH CHECK (
    lighthouse.current_kind() = 'staff' AND lighthouse.has_scope('models:admin')
    AND published_by = lighthouse.current_subject());
GRANT SELECT, INSERT ON lighthouse.model_card TO {role};
"""

DOWNGRADE = """
DROP TABLE lighthouse.model_card;
DROP TABLE lighthouse.licence_model_version;
"""


def upgrade() -> None:
    execute_script(UPGRADE.format(role=app_role()))


def downgrade() -> None:
    execute_script(DOWNGRADE)
