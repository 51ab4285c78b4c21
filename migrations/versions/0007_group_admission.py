"""Group admission: many metered requests for one licence reserved in one call, and their
audit records appended in one.

Admitting requests one transaction at a time holds the licence's ledger rows from the reservation
to the commit's flush, so one licence admits at most one request per flush, whatever the number
of gateway processes. ``reserve_quotas`` judges a group of requests in order against the same
locked rows (each against what the earlier ones left), writes the counters once and the
reservations in one insert: the ledger stays exact and the rows are held once per group.
``reserve_quota`` becomes the group of one; ``finish_reservations`` settles or releases a
group. ``append_audits`` chains several records under one
hold of the chain's head (and one update of it), each linked exactly as ``append_audit`` links
one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FUNCTIONS = """
-- Reserve each request's largest cost on a licence, in the order given; returns one entry per
-- request: NULL (reserved) or why not (the licence's state, a quota, a rate limit, the
-- concurrency cap). What one request is refused leaves room for the next.
CREATE FUNCTION lighthouse.reserve_quotas(
    for_licence integer, for_requests uuid[], want_input bigint[], want_output bigint[],
    want_images integer[], lease interval, zone text
) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lighthouse AS $$
DECLARE
    terms lighthouse.licence;
    period lighthouse.quota_period;
    load lighthouse.licence_load;
    at_period timestamptz;
    at_minute timestamptz := date_trunc('minute', now());
    wanted integer := cardinality(for_requests);
    refusals text[];
    state text;
    requests_now bigint;
    input_now bigint;
    output_now bigint;
    images_now bigint;
    minute_requests_now bigint;
    minute_tokens_now bigint;
    in_flight_now bigint;
    taken_requests bigint := 0;
    taken_input bigint := 0;
    taken_output bigint := 0;
    taken_images bigint := 0;
BEGIN
    IF NOT lighthouse.acts_for_licence(for_licence) THEN
        RAISE EXCEPTION 'not acting for licence %', for_licence USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF wanted IS NULL OR wanted = 0 THEN
        RETURN '{}';
    END IF;
    IF cardinality(want_input) <> wanted OR cardinality(want_output) <> wanted
       OR cardinality(want_images) <> wanted THEN
        RAISE EXCEPTION 'one cost per request' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(want_input, want_output, want_images) AS w(i, o, m)
               WHERE i IS NULL OR o IS NULL OR m IS NULL OR i < 0 OR o < 0 OR m < 0) THEN
        RAISE EXCEPTION 'a negative reservation' USING ERRCODE = 'check_violation';
    END IF;
    refusals := array_fill(NULL::text, ARRAY[wanted]);
    SELECT * INTO STRICT terms FROM lighthouse.licence WHERE id = for_licence;
    IF terms.revoked_at IS NOT NULL THEN
        state := 'REVOKED';
    ELSIF terms.suspended_at IS NOT NULL THEN
        state := 'SUSPENDED';
    ELSIF now() < terms.valid_from THEN
        state := 'NOT_YET_VALID';
    ELSIF now() >= terms.valid_until THEN
        state := 'EXPIRED';
    ELSIF (SELECT status FROM lighthouse.licensee WHERE id = terms.licensee_id) <> 'ACTIVE' THEN
        state := 'LICENSEE_INACTIVE';
    END IF;
    IF state IS NOT NULL THEN
        RETURN array_fill(state, ARRAY[wanted]);
    END IF;
    at_period := lighthouse.quota_period_start(terms.quota_period, now(), zone);
    INSERT INTO lighthouse.quota_period (licence_id, period_start) VALUES (for_licence, at_period)
        ON CONFLICT DO NOTHING;
    INSERT INTO lighthouse.licence_load (licence_id) VALUES (for_licence) ON CONFLICT DO NOTHING;
    -- Rows locked in one order (period, then load) by every admission and release: no deadlocks.
    SELECT * INTO STRICT period FROM lighthouse.quota_period
        WHERE licence_id = for_licence AND period_start = at_period FOR UPDATE;
    SELECT * INTO STRICT load FROM lighthouse.licence_load WHERE licence_id = for_licence FOR UPDATE;
    requests_now := period.used_requests + period.reserved_requests;
    input_now := period.used_input_tokens + period.reserved_input_tokens;
    output_now := period.used_output_tokens + period.reserved_output_tokens;
    images_now := period.used_images + period.reserved_images;
    IF load.minute_start <> at_minute THEN
        minute_requests_now := 0;
        minute_tokens_now := 0;
    ELSE
        minute_requests_now := load.minute_requests;
        minute_tokens_now := load.minute_tokens;
    END IF;
    in_flight_now := load.in_flight;
    FOR n IN 1 .. wanted LOOP
        IF requests_now + 1 > terms.quota_requests THEN
            refusals[n] := 'REQUESTS';
        ELSIF input_now + want_input[n] > terms.quota_input_tokens THEN
            refusals[n] := 'INPUT_TOKENS';
        ELSIF output_now + want_output[n] > terms.quota_output_tokens THEN
            refusals[n] := 'OUTPUT_TOKENS';
        ELSIF images_now + want_images[n] > terms.quota_images THEN
            refusals[n] := 'IMAGES';
        ELSIF minute_requests_now + 1 > terms.requests_per_minute THEN
            refusals[n] := 'RATE_REQUESTS';
        ELSIF minute_tokens_now + want_input[n] + want_output[n] > terms.tokens_per_minute THEN
            refusals[n] := 'RATE_TOKENS';
        ELSIF in_flight_now + 1 > terms.max_concurrent THEN
            refusals[n] := 'CONCURRENCY';
        ELSE
            requests_now := requests_now + 1;
            input_now := input_now + want_input[n];
            output_now := output_now + want_output[n];
            images_now := images_now + want_images[n];
            minute_requests_now := minute_requests_now + 1;
            minute_tokens_now := minute_tokens_now + want_input[n] + want_output[n];
            in_flight_now := in_flight_now + 1;
            taken_requests := taken_requests + 1;
            taken_input := taken_input + want_input[n];
            taken_output := taken_output + want_output[n];
            taken_images := taken_images + want_images[n];
        END IF;
    END LOOP;
    IF taken_requests = 0 THEN
        RETURN refusals;
    END IF;
    UPDATE lighthouse.quota_period SET
        reserved_requests = reserved_requests + taken_requests,
        reserved_input_tokens = reserved_input_tokens + taken_input,
        reserved_output_tokens = reserved_output_tokens + taken_output,
        reserved_images = reserved_images + taken_images
    WHERE licence_id = for_licence AND period_start = at_period;
    UPDATE lighthouse.licence_load SET
        in_flight = in_flight_now,
        minute_start = at_minute,
        minute_requests = minute_requests_now,
        minute_tokens = minute_tokens_now
    WHERE licence_id = for_licence;
    INSERT INTO lighthouse.quota_reservation
        (request_id, licence_id, period_start, minute_start, input_tokens, output_tokens, images,
         lease_until)
    SELECT w.request_id, for_licence, at_period, at_minute, w.i, w.o, w.m, now() + lease
    FROM unnest(for_requests, want_input, want_output, want_images) WITH ORDINALITY
         AS w(request_id, i, o, m, n)
    WHERE refusals[w.n] IS NULL;
    RETURN refusals;
END
$$;

-- One request: the group of one.
CREATE OR REPLACE FUNCTION lighthouse.reserve_quota(
    for_request uuid, for_licence integer, want_input bigint, want_output bigint, want_images integer,
    lease interval, zone text
) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, lighthouse AS $$
    SELECT (lighthouse.reserve_quotas(for_licence, ARRAY[for_request], ARRAY[want_input],
                                      ARRAY[want_output], ARRAY[want_images], lease, zone))[1]
$$;

-- End several reservations (finish_reservation for each, in the order given): the period each
-- was charged to, or NULL where there was no such reservation.
CREATE FUNCTION lighthouse.finish_reservations(
    for_requests uuid[], succeeded boolean[], spent_input bigint[], spent_output bigint[],
    spent_images integer[]
) RETURNS timestamptz[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lighthouse AS $$
DECLARE
    wanted integer := coalesce(cardinality(for_requests), 0);
    periods timestamptz[] := '{}';
BEGIN
    IF coalesce(cardinality(succeeded), 0) <> wanted
       OR coalesce(cardinality(spent_input), 0) <> wanted
       OR coalesce(cardinality(spent_output), 0) <> wanted
       OR coalesce(cardinality(spent_images), 0) <> wanted THEN
        RAISE EXCEPTION 'one outcome per request' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR n IN 1 .. wanted LOOP
        periods := periods || lighthouse.finish_reservation(
            for_requests[n], succeeded[n], spent_input[n], spent_output[n], spent_images[n]);
    END LOOP;
    RETURN periods;
END
$$;

-- A licence's usage records are paged newest first with the request id breaking ties: the
-- index serves the pages in order.
DROP INDEX lighthouse.usage_record_licence_idx;
CREATE INDEX usage_record_licence_page_idx
    ON lighthouse.usage_record (licence_id, finished_at DESC, request_id DESC);

-- An audit record as append_audit takes it.
CREATE TYPE lighthouse.audit_entry AS (
    occurred_at timestamptz, request_id text, subject text, client_id text, bureau text,
    principal_kind text, category text, operation text, document_hash text,
    resource_ids text[], decision text, policy_ids text[], policy_version text,
    personal_data boolean, payload text);

-- Several records chained in the order given, under one hold of the head; the last one's
-- sequence number.
CREATE FUNCTION lighthouse.append_audits(entries lighthouse.audit_entry[]) RETURNS bigint
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
"""

GRANTS = """
REVOKE ALL ON FUNCTION lighthouse.reserve_quotas, lighthouse.finish_reservations FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.reserve_quotas, lighthouse.finish_reservations TO {role};
REVOKE ALL ON FUNCTION lighthouse.append_audits FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.append_audits TO {role};
GRANT USAGE ON TYPE lighthouse.audit_entry TO {role};
"""


def upgrade() -> None:
    execute_script(FUNCTIONS)
    execute_script(GRANTS.format(role=app_role()))


def downgrade() -> None:
    raise RuntimeError("0007 cannot be downgraded: 0006, under it, cannot be either")
