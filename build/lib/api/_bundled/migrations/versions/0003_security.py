"""Who sees what: OAuth clients and signing keys, shares, personal data apart, row-level
security on every bureau-owned table, and the hash-chained audit trail.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = """
-- Machine clients of the authorization server (client credentials grant).
CREATE TABLE lighthouse.oauth_client (
    client_id    text PRIMARY KEY CHECK (client_id ~ '^[a-z0-9][a-z0-9._-]{2,63}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    secret_hash  text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('service', 'licensee')),
    bureau_id    integer REFERENCES lighthouse.bureau (id),
    roles        text[] NOT NULL DEFAULT '{}',
    scopes       text[] NOT NULL,
    disabled_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Token signing keys. Private keys are stored encrypted (AES-256-GCM under the key-encryption
-- key from the settings). A key is published from creation, signs from activates_at, stops
-- signing at retires_at and leaves the published set at expires_at.
CREATE TABLE lighthouse.signing_key (
    kid                    text PRIMARY KEY,
    algorithm              text NOT NULL CHECK (algorithm IN ('ES256', 'RS256')),
    public_jwk             jsonb NOT NULL,
    private_jwk_encrypted  bytea NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    activates_at           timestamptz NOT NULL,
    retires_at             timestamptz,
    expires_at             timestamptz,
    CHECK (retires_at IS NULL OR retires_at >= activates_at),
    CHECK (expires_at IS NULL OR (retires_at IS NOT NULL AND expires_at >= retires_at))
);

CREATE TABLE lighthouse.revoked_token (
    jti         text PRIMARY KEY,
    client_id   text NOT NULL,
    revoked_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

-- Token endpoint rate limiting: requests per caller per minute, counted in the database so the
-- limit holds across gateway processes.
CREATE TABLE lighthouse.token_request_count (
    caller        text NOT NULL,
    window_start  timestamptz NOT NULL,
    requests      integer NOT NULL,
    PRIMARY KEY (caller, window_start)
);

-- An incident shared with a bureau that is not responsible for it.
CREATE TABLE lighthouse.incident_share (
    incident_id  bigint NOT NULL REFERENCES lighthouse.incident (id),
    bureau_id    integer NOT NULL REFERENCES lighthouse.bureau (id),
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    shared_by    text NOT NULL,
    shared_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, bureau_id)
);
CREATE INDEX incident_share_bureau_idx ON lighthouse.incident_share (bureau_id, incident_id);
CREATE INDEX incident_transfer_bureaus_idx
    ON lighthouse.incident_transfer (to_bureau_id, incident_id);
CREATE INDEX incident_transfer_from_idx
    ON lighthouse.incident_transfer (from_bureau_id, incident_id);
-- Bureaus other than the responsible one that may see an incident: the reporting bureau, the
-- owner of the asset it was raised from, bureaus that held it before a transfer, and bureaus it
-- was shared with. Kept by the workflow as those facts are written, so the row policy reads one
-- column instead of joining tables that are themselves under row policies.
ALTER TABLE lighthouse.incident
    ADD COLUMN involved_bureau_ids integer[] NOT NULL DEFAULT '{}';
UPDATE lighthouse.incident i SET involved_bureau_ids = ARRAY(
    SELECT DISTINCT b FROM (
        SELECT i.reporting_bureau_id AS b
        UNION ALL SELECT a.bureau_id FROM lighthouse.asset a WHERE a.id = i.asset_id
        UNION ALL SELECT t.from_bureau_id FROM lighthouse.incident_transfer t
            WHERE t.incident_id = i.id
    ) AS involved WHERE b IS NOT NULL AND b <> i.responsible_bureau_id ORDER BY b);
CREATE INDEX incident_involved_idx ON lighthouse.incident USING gin (involved_bureau_ids);

-- Personal data (Personal Data Protection Act) lives apart, under its own row policy.
CREATE TABLE lighthouse.incident_reporter (
    incident_id  bigint PRIMARY KEY REFERENCES lighthouse.incident (id),
    name         text CHECK (length(name) <= 200),
    phone        text CHECK (length(phone) <= 40),
    email        text CHECK (length(email) <= 320),
    -- free text from the reporter that may identify people
    personal_note text CHECK (length(personal_note) <= 4000)
);
INSERT INTO lighthouse.incident_reporter (incident_id, name, phone, email)
SELECT id, reporter_name, reporter_phone, reporter_email FROM lighthouse.incident
WHERE reporter_name IS NOT NULL OR reporter_phone IS NOT NULL OR reporter_email IS NOT NULL;
ALTER TABLE lighthouse.incident
    DROP COLUMN reporter_name, DROP COLUMN reporter_phone, DROP COLUMN reporter_email;

-- The audit trail: one record per operation, denial, personal-data access and inference call,
-- chained by SHA-256: hash = sha256(prev_hash || seq || '|' || payload).
CREATE TABLE lighthouse.audit_record (
    seq             bigint PRIMARY KEY,
    occurred_at     timestamptz NOT NULL,
    request_id      text NOT NULL,
    subject         text NOT NULL,
    client_id       text,
    bureau          text,
    principal_kind  text NOT NULL,
    category        text NOT NULL,
    operation       text NOT NULL,
    document_hash   text,
    resource_ids    text[] NOT NULL DEFAULT '{}',
    decision        text NOT NULL CHECK (decision IN ('ALLOW', 'DENY', 'PARTIAL')),
    policy_ids      text[] NOT NULL DEFAULT '{}',
    policy_version  text NOT NULL,
    personal_data   boolean NOT NULL DEFAULT false,
    payload         text NOT NULL,
    prev_hash       bytea NOT NULL,
    hash            bytea NOT NULL
);
CREATE INDEX audit_record_subject_idx ON lighthouse.audit_record (subject, seq);
CREATE INDEX audit_record_time_idx ON lighthouse.audit_record (occurred_at, seq);
CREATE INDEX audit_record_resources_idx ON lighthouse.audit_record USING gin (resource_ids);

CREATE TABLE lighthouse.audit_chain_head (
    id         integer PRIMARY KEY CHECK (id = 1),
    last_seq   bigint NOT NULL,
    last_hash  bytea NOT NULL
);
INSERT INTO lighthouse.audit_chain_head VALUES (1, 0, sha256(''::bytea));

CREATE TRIGGER audit_record_append_only
    BEFORE UPDATE OR DELETE ON lighthouse.audit_record
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();
CREATE TRIGGER audit_record_no_truncate
    BEFORE TRUNCATE ON lighthouse.audit_record
    FOR EACH STATEMENT EXECUTE FUNCTION lighthouse.refuse_change();

-- The policy-set versions the service has run with.
CREATE TABLE lighthouse.policy_version (
    version        text PRIMARY KEY,
    policies       text NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);
"""

# The identity of the request, as set by the gateway with set_config(..., true).
FUNCTIONS = """
CREATE FUNCTION lighthouse.current_bureau() RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('lighthouse.bureau_id', true), '')::integer
$$;

CREATE FUNCTION lighthouse.current_subject() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('lighthouse.subject', true), '')
$$;

CREATE FUNCTION lighthouse.current_kind() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('lighthouse.kind', true), ''), 'anonymous')
$$;

CREATE FUNCTION lighthouse.has_scope(wanted text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT wanted = ANY (string_to_array(current_setting('lighthouse.scopes', true), ','))
$$;

CREATE FUNCTION lighthouse.has_role(wanted text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT wanted = ANY (string_to_array(current_setting('lighthouse.roles', true), ','))
$$;

-- City-wide readers: the 1999 joint service centre's staff, city-wide viewers, and auditors
-- (who also need incidents:read, granted for an investigation).
CREATE FUNCTION lighthouse.reads_all_incidents() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT lighthouse.current_kind() = 'auditor'
        OR (lighthouse.current_kind() IN ('staff', 'service') AND (
            lighthouse.has_role('city_viewer')
            OR EXISTS (SELECT 1 FROM lighthouse.bureau b
                       WHERE b.id = lighthouse.current_bureau() AND b.joint_service_centre)))
$$;

-- The visibility rule for incidents, for incident_facts(). The incident_read policy below states
-- the same rule with sub-selects, so that the identity is read once per query, not per row.
CREATE FUNCTION lighthouse.incident_visible(responsible integer, involved integer[]) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT lighthouse.has_scope('incidents:read') AND (
        lighthouse.reads_all_incidents()
        OR responsible = lighthouse.current_bureau()
        OR lighthouse.current_bureau() = ANY (involved))
$$;

CREATE FUNCTION lighthouse.in_joint_service_centre() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM lighthouse.bureau b
                   WHERE b.id = lighthouse.current_bureau() AND b.joint_service_centre)
$$;

-- The facts the Cedar policies judge an incident by, from the records themselves: for incidents
-- the caller may see, or for auditors explaining a decision. Bureau codes only, no content.
-- SECURITY DEFINER (with the owner's clause in the policies below) so that what it reports does
-- not depend on the caller's other scopes. Its search path includes public, where earthdistance
-- lives: on PostgreSQL 15 the planner expands the location index's ll_to_earth() by name.
CREATE FUNCTION lighthouse.incident_facts(ids bigint[])
RETURNS TABLE (incident_id bigint, responsible text, reporting text, asset_bureau text,
               held_by text[], shared_with text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
    SELECT i.id, rb.code, pb.code, ab.code,
           ARRAY(SELECT DISTINCT fb.code FROM lighthouse.incident_transfer t
                 JOIN lighthouse.bureau fb ON fb.id = t.from_bureau_id
                 WHERE t.incident_id = i.id ORDER BY fb.code),
           ARRAY(SELECT sb.code FROM lighthouse.incident_share s
                 JOIN lighthouse.bureau sb ON sb.id = s.bureau_id
                 WHERE s.incident_id = i.id ORDER BY sb.code)
    FROM lighthouse.incident i
    JOIN lighthouse.bureau rb ON rb.id = i.responsible_bureau_id
    LEFT JOIN lighthouse.bureau pb ON pb.id = i.reporting_bureau_id
    LEFT JOIN lighthouse.asset a ON a.id = i.asset_id
    LEFT JOIN lighthouse.bureau ab ON ab.id = a.bureau_id
    WHERE i.id = ANY (ids)
      AND (lighthouse.has_scope('audit:read')
           OR lighthouse.incident_visible(i.responsible_bureau_id, i.involved_bureau_ids))
$$;

-- The only way to write the audit trail: appends under the chain head's row lock (held to
-- commit, so the chain follows commit order) and links the record to its predecessor.
CREATE FUNCTION lighthouse.append_audit(
    occurred_at timestamptz, request_id text, subject text, client_id text, bureau text,
    principal_kind text, category text, operation text, document_hash text,
    resource_ids text[], decision text, policy_ids text[], policy_version text,
    personal_data boolean, payload text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
DECLARE
    head lighthouse.audit_chain_head;
    next_seq bigint;
    next_hash bytea;
BEGIN
    SELECT * INTO head FROM lighthouse.audit_chain_head WHERE id = 1 FOR UPDATE;
    next_seq := head.last_seq + 1;
    next_hash := sha256(head.last_hash || convert_to(next_seq::text || '|' || payload, 'UTF8'));
    INSERT INTO lighthouse.audit_record VALUES (
        next_seq, occurred_at, request_id, subject, client_id, bureau, principal_kind, category,
        operation, document_hash, resource_ids, decision, policy_ids, policy_version,
        personal_data, payload, head.last_hash, next_hash);
    UPDATE lighthouse.audit_chain_head SET last_seq = next_seq, last_hash = next_hash WHERE id = 1;
    RETURN next_seq;
END;
$$;
"""

# Row-level security: every bureau-owned table, forced for the owner too.
POLICIES = """
ALTER TABLE lighthouse.incident ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.incident FORCE ROW LEVEL SECURITY;
-- (The sub-selects are evaluated once per query, not per row.) Inside the schema's own
-- SECURITY DEFINER functions (current_user is then the owner, not the session's role) the
-- function's own WHERE clause decides.
CREATE POLICY incident_read ON lighthouse.incident FOR SELECT USING (
    (SELECT lighthouse.has_scope('incidents:read')) AND (
        (SELECT lighthouse.reads_all_incidents())
        OR responsible_bureau_id = (SELECT lighthouse.current_bureau())
        OR (SELECT lighthouse.current_bureau()) = ANY (involved_bureau_ids)));
CREATE POLICY incident_read_definer ON lighthouse.incident FOR SELECT USING (
    current_user <> session_user);
CREATE POLICY incident_create ON lighthouse.incident FOR INSERT WITH CHECK (
    lighthouse.has_scope('incidents:write') AND lighthouse.current_kind() IN ('staff', 'service')
    AND reporting_bureau_id = lighthouse.current_bureau());
-- Only the responsible bureau (or the joint service centre) changes an incident; a transfer may
-- hand it to any bureau.
CREATE POLICY incident_change ON lighthouse.incident FOR UPDATE USING (
    lighthouse.has_scope('incidents:write') AND lighthouse.current_kind() IN ('staff', 'service')
    AND (responsible_bureau_id = (SELECT lighthouse.current_bureau())
         OR (SELECT lighthouse.in_joint_service_centre())))
    WITH CHECK (lighthouse.has_scope('incidents:write'));

-- What hangs off an incident is visible exactly when the incident is.
ALTER TABLE lighthouse.incident_event ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.incident_event FORCE ROW LEVEL SECURITY;
CREATE POLICY incident_event_read ON lighthouse.incident_event FOR SELECT USING (
    EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id));
CREATE POLICY incident_event_append ON lighthouse.incident_event FOR INSERT WITH CHECK (
    EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id));

ALTER TABLE lighthouse.work_order ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.work_order FORCE ROW LEVEL SECURITY;
CREATE POLICY work_order_read ON lighthouse.work_order FOR SELECT USING (
    EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id));
CREATE POLICY work_order_create ON lighthouse.work_order FOR INSERT WITH CHECK (
    lighthouse.has_scope('incidents:write') AND bureau_id = lighthouse.current_bureau()
    AND EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id));
CREATE POLICY work_order_change ON lighthouse.work_order FOR UPDATE USING (
    lighthouse.has_scope('incidents:write')
    AND EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id)
    AND (bureau_id = (SELECT lighthouse.current_bureau())
         OR (SELECT lighthouse.in_joint_service_centre())));

ALTER TABLE lighthouse.incident_transfer ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.incident_transfer FORCE ROW LEVEL SECURITY;
CREATE POLICY incident_transfer_read ON lighthouse.incident_transfer FOR SELECT USING (
    EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id));
CREATE POLICY incident_transfer_create ON lighthouse.incident_transfer FOR INSERT WITH CHECK (
    lighthouse.has_scope('incidents:write')
    AND EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id));

ALTER TABLE lighthouse.incident_share ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.incident_share FORCE ROW LEVEL SECURITY;
CREATE POLICY incident_share_read ON lighthouse.incident_share FOR SELECT USING (
    EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id));
CREATE POLICY incident_share_create ON lighthouse.incident_share FOR INSERT WITH CHECK (
    lighthouse.has_scope('incidents:write')
    AND EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id
                AND i.responsible_bureau_id = lighthouse.current_bureau()));
CREATE POLICY incident_share_remove ON lighthouse.incident_share FOR DELETE USING (
    lighthouse.has_scope('incidents:write')
    AND EXISTS (SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id
                AND i.responsible_bureau_id = lighthouse.current_bureau()));

-- Personal data: the responsible bureau with pii:read, or an auditor granted pii:read.
ALTER TABLE lighthouse.incident_reporter ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.incident_reporter FORCE ROW LEVEL SECURITY;
CREATE POLICY incident_reporter_read ON lighthouse.incident_reporter FOR SELECT USING (
    lighthouse.has_scope('pii:read') AND EXISTS (
        SELECT 1 FROM lighthouse.incident i WHERE i.id = incident_id
        AND (i.responsible_bureau_id = lighthouse.current_bureau()
             OR lighthouse.current_kind() = 'auditor')));
CREATE POLICY incident_reporter_create ON lighthouse.incident_reporter FOR INSERT WITH CHECK (
    lighthouse.has_scope('incidents:write'));

-- Assets are the city's shared register: readable with assets:read, changed by their bureau.
ALTER TABLE lighthouse.asset ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.asset FORCE ROW LEVEL SECURITY;
CREATE POLICY asset_read ON lighthouse.asset FOR SELECT USING (lighthouse.has_scope('assets:read'));
CREATE POLICY asset_read_definer ON lighthouse.asset FOR SELECT USING (current_user <> session_user);
CREATE POLICY asset_create ON lighthouse.asset FOR INSERT WITH CHECK (
    lighthouse.has_scope('assets:write') AND bureau_id = lighthouse.current_bureau());
CREATE POLICY asset_change ON lighthouse.asset FOR UPDATE USING (
    lighthouse.has_scope('assets:write') AND bureau_id = lighthouse.current_bureau());

-- Idempotency keys belong to the caller that used them.
ALTER TABLE lighthouse.idempotency_key ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.idempotency_key FORCE ROW LEVEL SECURITY;
CREATE POLICY idempotency_key_own ON lighthouse.idempotency_key
    USING (subject = lighthouse.current_subject())
    WITH CHECK (subject = lighthouse.current_subject());

-- The audit trail is read by auditors only and written only through append_audit().
ALTER TABLE lighthouse.audit_record ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.audit_record FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_record_read ON lighthouse.audit_record FOR SELECT USING (
    lighthouse.has_scope('audit:read'));
-- Inserts come only from append_audit(), which runs as the schema owner (the application role
-- has no INSERT privilege on the table).
CREATE POLICY audit_record_append ON lighthouse.audit_record FOR INSERT WITH CHECK (
    current_user <> session_user);
"""

GRANTS = """
GRANT SELECT ON lighthouse.incident_share, lighthouse.incident_reporter, lighthouse.audit_record,
    lighthouse.policy_version, lighthouse.oauth_client, lighthouse.signing_key
    TO {role};
GRANT INSERT, DELETE ON lighthouse.incident_share TO {role};
GRANT INSERT ON lighthouse.incident_reporter TO {role};
GRANT INSERT, UPDATE ON lighthouse.policy_version TO {role};
GRANT SELECT, INSERT, DELETE ON lighthouse.revoked_token TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON lighthouse.token_request_count TO {role};
-- The gateway creates the first signing key when none exists.
GRANT INSERT ON lighthouse.signing_key TO {role};
REVOKE ALL ON FUNCTION lighthouse.append_audit FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.append_audit TO {role};
REVOKE ALL ON FUNCTION lighthouse.incident_facts FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.incident_facts TO {role};
"""


def upgrade() -> None:
    role = app_role()
    execute_script(TABLES)
    execute_script(FUNCTIONS)
    execute_script(POLICIES)
    execute_script(GRANTS.format(role=role))


def downgrade() -> None:
    raise RuntimeError(
        "0003 cannot be undone automatically: it moves personal data and starts the audit trail"
    )
