"""Model decisions: which model version the vision workers use is a decision in the registry,
with who made it, when and why, not a setting.

Each decision is a row of ``model_decision``, never changed (append-only); the version in
production is the newest production decision's, which the vision workers read with each frame
(so they follow a decision without a restart).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE lighthouse.model_decision (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The model as the serving tier serves it (its model id), and the version that names it.
    model        text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    version      text NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
    role         text NOT NULL CHECK (role IN ('PRODUCTION')),
    reason       text NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 2000),
    decided_by   text NOT NULL,
    decided_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_decision_role_idx ON lighthouse.model_decision (role, id DESC);
CREATE TRIGGER model_decision_append_only
    BEFORE UPDATE OR DELETE ON lighthouse.model_decision
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();

-- Read by whoever reads the registry (and the vision workers); made by the city's model
-- officers only (the policies decide first: vision.decide).
ALTER TABLE lighthouse.model_decision ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.model_decision FORCE ROW LEVEL SECURITY;
CREATE POLICY model_decision_read ON lighthouse.model_decision FOR SELECT USING (
    (SELECT lighthouse.current_kind()) = 'system'
    OR ((SELECT lighthouse.has_scope('incidents:read'))
        AND (SELECT lighthouse.current_kind()) IN ('staff', 'service', 'auditor')));
CREATE POLICY model_decision_make ON lighthouse.model_decision FOR INSERT WITH CHECK (
    lighthouse.has_scope('models:admin') AND lighthouse.current_kind() = 'staff'
    AND decided_by = lighthouse.current_subject());
GRANT SELECT, INSERT ON lighthouse.model_decision TO {role};
"""

DOWNGRADE = """
DROP TABLE lighthouse.model_decision;
"""


def upgrade() -> None:
    execute_script(UPGRADE.format(role=app_role()))


def downgrade() -> None:
    execute_script(DOWNGRADE)
