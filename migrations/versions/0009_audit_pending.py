"""Audit records without a queue at the chain's head: appended in the access's own transaction
to a pending log, and linked into the hash chain in batches right after their commit.

Before, ``append_audit`` locked the chain's head row from the append to the commit, so every
audited transaction committed in turn. Now a record is inserted, unlinked, in the same
transaction as the access it records (so it is durable exactly when the access is, and never
without it); after the commit, ``chain_audits`` links every pending record in one short
transaction under the head's lock, with the same hashing as before. Whoever chains links the
records of everyone who committed before it: under load one chaining serves many commits.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = """
-- Records appended and committed, not yet linked: written only by the append functions and
-- emptied only by chain_audits (all three run as the owner; the application role has no
-- privilege on the table).
CREATE TABLE lighthouse.audit_pending (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    payload         text NOT NULL
);
CREATE TRIGGER audit_pending_append_only
    BEFORE UPDATE ON lighthouse.audit_pending
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();

CREATE OR REPLACE FUNCTION lighthouse.append_audit(
    occurred_at timestamptz, request_id text, subject text, client_id text, bureau text,
    principal_kind text, category text, operation text, document_hash text,
    resource_ids text[], decision text, policy_ids text[], policy_version text,
    personal_data boolean, payload text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
    INSERT INTO lighthouse.audit_pending (
        occurred_at, request_id, subject, client_id, bureau, principal_kind, category,
        operation, document_hash, resource_ids, decision, policy_ids, policy_version,
        personal_data, payload)
    VALUES (occurred_at, request_id, subject, client_id, bureau, principal_kind, category,
        operation, document_hash, resource_ids, decision, policy_ids, policy_version,
        personal_data, payload)
    RETURNING id;
$$;

CREATE OR REPLACE FUNCTION lighthouse.append_audits(entries lighthouse.audit_entry[])
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
    WITH added AS (
        INSERT INTO lighthouse.audit_pending (
            occurred_at, request_id, subject, client_id, bureau, principal_kind, category,
            operation, document_hash, resource_ids, decision, policy_ids, policy_version,
            personal_data, payload)
        SELECT e.occurred_at, e.request_id, e.subject, e.client_id, e.bureau,
            e.principal_kind, e.category, e.operation, e.document_hash, e.resource_ids,
            e.decision, e.policy_ids, e.policy_version, e.personal_data, e.payload
        FROM unnest(coalesce(entries, '{}')) WITH ORDINALITY AS e
        ORDER BY e.ordinality
        RETURNING id)
    SELECT max(id) FROM added;
$$;

-- Link the pending records (at most max_records, oldest first) into the chain, each exactly as
-- append_audit linked one; the last sequence number. Runs under the head's row lock, so one
-- chaining at a time; a record appended in the caller's own open transaction is linked too.
-- after_commit: called in a transaction of its own, after the records' own commits. That
-- transaction's commit then need not wait for its disk flush: it writes nothing that is not
-- already durable in the pending log, and a crash that loses it loses the linking only (the
-- records stay pending, and the next linking takes them).
CREATE FUNCTION lighthouse.chain_audits(max_records integer, after_commit boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
DECLARE
    head lighthouse.audit_chain_head;
    pending lighthouse.audit_pending;
    next_seq bigint;
    previous bytea;
    next_hash bytea;
    linked bigint[] := '{}';
BEGIN
    IF after_commit THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    SELECT * INTO head FROM lighthouse.audit_chain_head WHERE id = 1 FOR UPDATE;
    next_seq := head.last_seq;
    next_hash := head.last_hash;
    FOR pending IN
        SELECT * FROM lighthouse.audit_pending ORDER BY id LIMIT max_records FOR UPDATE
    LOOP
        previous := next_hash;
        next_seq := next_seq + 1;
        next_hash := sha256(previous || convert_to(next_seq::text || '|' || pending.payload, 'UTF8'));
        INSERT INTO lighthouse.audit_record VALUES (
            next_seq, pending.occurred_at, pending.request_id, pending.subject, pending.client_id,
            pending.bureau, pending.principal_kind, pending.category, pending.operation,
            pending.document_hash, pending.resource_ids, pending.decision, pending.policy_ids,
            pending.policy_version, pending.personal_data, pending.payload, previous, next_hash);
        linked := linked || pending.id;
    END LOOP;
    IF next_seq > head.last_seq THEN
        DELETE FROM lighthouse.audit_pending WHERE id = ANY (linked);
        UPDATE lighthouse.audit_chain_head SET last_seq = next_seq, last_hash = next_hash
        WHERE id = 1;
    END IF;
    RETURN next_seq;
END;
$$;

-- The linking sent in the same round trip as a request's COMMIT ("COMMIT; SELECT
-- lighthouse.link_committed(n)"): it never raises, so an error from that round trip is the
-- commit's own. A linking that fails (a lock or statement timeout) is logged by the server and
-- left to the next linking; NULL then.
CREATE FUNCTION lighthouse.link_committed(max_records integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
BEGIN
    RETURN lighthouse.chain_audits(max_records, true);
EXCEPTION WHEN OTHERS OR query_canceled THEN
    RAISE WARNING 'audit linking after a commit failed (left to the next linking): % %',
        SQLSTATE, SQLERRM;
    RETURN NULL;
END;
$$;
"""

GRANTS = """
REVOKE ALL ON FUNCTION lighthouse.chain_audits FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.chain_audits TO {role};
REVOKE ALL ON FUNCTION lighthouse.link_committed FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.link_committed TO {role};
"""

# Back to appending under the head's lock: what is pending is linked first.
DOWNGRADE = """
SELECT lighthouse.chain_audits(2147483647);
DROP FUNCTION lighthouse.link_committed;
DROP FUNCTION lighthouse.chain_audits;
CREATE OR REPLACE FUNCTION lighthouse.append_audit(
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
CREATE OR REPLACE FUNCTION lighthouse.append_audits(entries lighthouse.audit_entry[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = lighthouse, public, pg_temp AS $$
DECLARE
    head lighthouse.audit_chain_head;
    entry lighthouse.audit_entry;
    next_seq bigint;
    previous bytea;
    next_hash bytea;
BEGIN
    SELECT * INTO head FROM lighthouse.audit_chain_head WHERE id = 1 FOR UPDATE;
    next_seq := head.last_seq;
    next_hash := head.last_hash;
    FOREACH entry IN ARRAY coalesce(entries, '{}') LOOP
        previous := next_hash;
        next_seq := next_seq + 1;
        next_hash := sha256(previous || convert_to(next_seq::text || '|' || entry.payload, 'UTF8'));
        INSERT INTO lighthouse.audit_record VALUES (
            next_seq, entry.occurred_at, entry.request_id, entry.subject, entry.client_id,
            entry.bureau, entry.principal_kind, entry.category, entry.operation,
            entry.document_hash, entry.resource_ids, entry.decision, entry.policy_ids,
            entry.policy_version, entry.personal_data, entry.payload, previous, next_hash);
    END LOOP;
    IF next_seq > head.last_seq THEN
        UPDATE lighthouse.audit_chain_head SET last_seq = next_seq, last_hash = next_hash
        WHERE id = 1;
    END IF;
    RETURN next_seq;
END;
$$;
DROP TABLE lighthouse.audit_pending;
"""


def upgrade() -> None:
    execute_script(UPGRADE)
    execute_script(GRANTS.format(role=app_role()))


def downgrade() -> None:
    execute_script(DOWNGRADE)
