"""Hardening: personal data for staff only, the joint service centre closes only false reports,
writes that hang off an incident checked against who may make them, incident notices carry
their visibility facts, and the audit chain gains external anchors.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
-- Personal data: the responsible bureau's *staff* with pii:read (services of that bureau read
-- incidents, never their reporters), or an auditor granted pii:read — as the Cedar rules say.
DROP POLICY incident_reporter_read ON lighthouse.incident_reporter;
CREATE POLICY incident_reporter_read ON lighthouse.incident_reporter FOR SELECT USING (
    lighthouse.has_scope('pii:read') AND EXISTS (
        SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id
        AND ((i.responsible_bureau_id = lighthouse.current_bureau()
              AND lighthouse.current_kind() = 'staff')
             OR lighthouse.current_kind() = 'auditor')));

-- Only the responsible bureau (or the joint service centre) changes an incident. A change made
-- for another bureau — by the joint service centre — may verify, route, mark a duplicate or
-- close a false report, and nothing else: the row it leaves is open, or closed as
-- FALSE_POSITIVE or DUPLICATE.
DROP POLICY incident_change ON lighthouse.incident;
CREATE POLICY incident_change ON lighthouse.incident FOR UPDATE USING (
    lighthouse.has_scope('incidents:write') AND lighthouse.current_kind() IN ('staff', 'service')
    AND (responsible_bureau_id = (SELECT lighthouse.current_bureau())
         OR (SELECT lighthouse.in_joint_service_centre())))
    WITH CHECK (
    lighthouse.has_scope('incidents:write') AND lighthouse.current_kind() IN ('staff', 'service')
    AND (responsible_bureau_id = (SELECT lighthouse.current_bureau())
         OR closing_reason IS NULL
         OR closing_reason IN ('FALSE_POSITIVE', 'DUPLICATE')
         OR NOT (SELECT lighthouse.in_joint_service_centre())));

-- What the joint service centre may do to another bureau's incident, checked against the row
-- before and after (a policy's WITH CHECK sees only the row after): verify it, route it to
-- another bureau, close it as a false report or a duplicate — not take it over and close it
-- as FIXED in the same statement. Sessions without a caller's identity (the schema owner's)
-- are not judged here.
CREATE FUNCTION lighthouse.guard_incident_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF lighthouse.current_kind() NOT IN ('staff', 'service')
       OR OLD.responsible_bureau_id = lighthouse.current_bureau() THEN
        RETURN NEW;
    END IF;
    IF NEW.responsible_bureau_id <> OLD.responsible_bureau_id THEN
        IF NEW.closing_reason IS NULL AND NEW.status IN (OLD.status, 'VERIFIED') THEN
            RETURN NEW;  -- routed to another bureau
        END IF;
    ELSIF NEW.status IN (OLD.status, 'VERIFIED') AND NEW.closing_reason IS NULL
          OR NEW.status = 'CLOSED' AND NEW.closing_reason IN ('FALSE_POSITIVE', 'DUPLICATE') THEN
        RETURN NEW;  -- verified, shared, closed as a false report or a duplicate
    END IF;
    RAISE EXCEPTION 'a change to another bureau''s incident that only its bureau may make'
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER incident_change_guard BEFORE UPDATE ON lighthouse.incident
    FOR EACH ROW EXECUTE FUNCTION lighthouse.guard_incident_change();

-- History is appended by whoever may change the incident (and by its reporter, once, as it is
-- created); transfers are recorded by the bureau handing the incident on (or the joint service
-- centre), from the bureau responsible now; work orders by the responsible bureau for its own
-- crews; reporters by the bureau that reported.
DROP POLICY incident_event_append ON lighthouse.incident_event;
CREATE POLICY incident_event_append ON lighthouse.incident_event FOR INSERT WITH CHECK (
    lighthouse.has_scope('incidents:write') AND lighthouse.current_kind() IN ('staff', 'service')
    AND EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id
                AND (i.responsible_bureau_id = lighthouse.current_bureau()
                     OR lighthouse.in_joint_service_centre()
                     OR (kind = 'CREATED' AND i.reporting_bureau_id = lighthouse.current_bureau()))));
DROP POLICY incident_transfer_create ON lighthouse.incident_transfer;
CREATE POLICY incident_transfer_create ON lighthouse.incident_transfer FOR INSERT WITH CHECK (
    lighthouse.has_scope('incidents:write') AND lighthouse.current_kind() IN ('staff', 'service')
    AND EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id
                AND i.responsible_bureau_id = from_bureau_id
                AND (from_bureau_id = lighthouse.current_bureau()
                     OR lighthouse.in_joint_service_centre())));
DROP POLICY work_order_create ON lighthouse.work_order;
CREATE POLICY work_order_create ON lighthouse.work_order FOR INSERT WITH CHECK (
    lighthouse.has_scope('incidents:write') AND bureau_id = lighthouse.current_bureau()
    AND EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id
                AND i.responsible_bureau_id = bureau_id));
DROP POLICY incident_reporter_create ON lighthouse.incident_reporter;
CREATE POLICY incident_reporter_create ON lighthouse.incident_reporter FOR INSERT WITH CHECK (
    lighthouse.has_scope('incidents:write')
    AND EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id
                AND i.reporting_bureau_id = lighthouse.current_bureau()));

-- Notices of changed incidents carry the facts the visibility rules judge them by, so a
-- subscriber the change is not for is passed over without a database transaction.
CREATE OR REPLACE FUNCTION lighthouse.announce_incident_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
BEGIN
    PERFORM pg_notify('lighthouse_incident_changes', json_build_object(
        'id', NEW.id,
        'version', NEW.version,
        'op', TG_OP,
        'status', NEW.status,
        'responsible_bureau_id', NEW.responsible_bureau_id,
        'facts', (
            SELECT json_build_object(
                'responsible', rb.code, 'reporting', pb.code, 'asset', ab.code,
                'held_by', ARRAY(SELECT DISTINCT fb.code FROM lighthouse.incident_transfer t
                                 JOIN lighthouse.bureau fb ON fb.id = t.from_bureau_id
                                 WHERE t.incident_id = NEW.id ORDER BY fb.code),
                'shared_with', ARRAY(SELECT sb.code FROM lighthouse.incident_share s
                                     JOIN lighthouse.bureau sb ON sb.id = s.bureau_id
                                     WHERE s.incident_id = NEW.id ORDER BY sb.code))
            FROM lighthouse.bureau rb
            LEFT JOIN lighthouse.bureau pb ON pb.id = NEW.reporting_bureau_id
            LEFT JOIN lighthouse.asset a ON a.id = NEW.asset_id
            LEFT JOIN lighthouse.bureau ab ON ab.id = a.bureau_id
            WHERE rb.id = NEW.responsible_bureau_id)
    )::text);
    RETURN NULL;
END;
$$;

-- External anchors of the audit chain: the head (sequence and hash) signed with the service's
-- key, published on a schedule. A copy kept elsewhere shows a truncated chain whose head was
-- rewound: the anchored record is missing, or its hash differs.
CREATE TABLE lighthouse.audit_anchor (
    seq          bigint NOT NULL,
    hash         bytea NOT NULL,
    anchored_at  timestamptz NOT NULL DEFAULT now(),
    signature    text NOT NULL,
    PRIMARY KEY (seq, anchored_at)
);
CREATE TRIGGER audit_anchor_append_only
    BEFORE UPDATE OR DELETE ON lighthouse.audit_anchor
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();
CREATE TRIGGER audit_anchor_no_truncate
    BEFORE TRUNCATE ON lighthouse.audit_anchor
    FOR EACH STATEMENT EXECUTE FUNCTION lighthouse.refuse_change();

-- The chain's head, for verification against it (not against max(seq)).
CREATE FUNCTION lighthouse.audit_head() RETURNS TABLE (last_seq bigint, last_hash bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
    SELECT last_seq, last_hash FROM lighthouse.audit_chain_head WHERE id = 1
$$;
"""

GRANTS = """
GRANT SELECT, INSERT ON lighthouse.audit_anchor TO {role};
REVOKE ALL ON FUNCTION lighthouse.audit_head FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.audit_head TO {role};
"""


def upgrade() -> None:
    execute_script(UPGRADE)
    execute_script(GRANTS.format(role=app_role()))


def downgrade() -> None:
    raise RuntimeError("0004 cannot be undone automatically: it starts the audit anchors")
