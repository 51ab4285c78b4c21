"""Licensing: licensees, their licences and the quota ledger that meters their inference.

A licence's quotas are kept exact across any number of gateway processes by the database alone:
a request reserves its largest possible cost before it is forwarded (one conditional UPDATE of
the licence's period row, one of its live row), settles its real cost when the answer is in, or
releases the reservation if the call failed. A reservation is a row with a lease, so one that a
crashed gateway left behind is given back by ``lighthouse.expire_reservations()``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = """
-- A company licensed to use the city's models.
CREATE TABLE lighthouse.licensee (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    company     text NOT NULL CHECK (length(company) BETWEEN 1 AND 200),
    -- Taiwan's unified business number (統一編號): eight digits.
    tax_id      text NOT NULL UNIQUE CHECK (tax_id ~ '^[0-9]{8}$'),
    -- [{"name": …, "email": …, "phone": …}], at most ten.
    contacts    jsonb NOT NULL DEFAULT '[]'
                CHECK (jsonb_typeof(contacts) = 'array' AND jsonb_array_length(contacts) <= 10),
    status      text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'SUSPENDED', 'CLOSED')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL
);

-- What a licensee may do with which models, for what, until when, and how much.
CREATE TABLE lighthouse.licence (
    id                   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    licensee_id          integer NOT NULL REFERENCES lighthouse.licensee (id),
    code                 text NOT NULL UNIQUE CHECK (code ~ '^[A-Z0-9][A-Z0-9-]{1,62}$'),
    models               text[] NOT NULL CHECK (cardinality(models) BETWEEN 1 AND 20),
    -- The application the city approved (e.g. "parking occupancy analytics"); requests carry
    -- it as their purpose tag.
    purpose              text NOT NULL CHECK (purpose ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    purpose_description  text NOT NULL CHECK (length(purpose_description) BETWEEN 1 AND 500),
    valid_from           timestamptz NOT NULL,
    valid_until          timestamptz NOT NULL,
    -- Quotas per period (a calendar day or month in the city's time zone).
    quota_period         text NOT NULL CHECK (quota_period IN ('DAY', 'MONTH')),
    quota_requests       bigint NOT NULL CHECK (quota_requests >= 0),
    quota_input_tokens   bigint NOT NULL CHECK (quota_input_tokens >= 0),
    quota_output_tokens  bigint NOT NULL CHECK (quota_output_tokens >= 0),
    quota_images         bigint NOT NULL CHECK (quota_images >= 0),
    -- Rate limits per calendar minute, and requests at once.
    requests_per_minute  integer NOT NULL CHECK (requests_per_minute > 0),
    tokens_per_minute    integer NOT NULL CHECK (tokens_per_minute > 0),
    max_concurrent       integer NOT NULL CHECK (max_concurrent > 0),
    -- Per request.
    max_tokens           integer NOT NULL CHECK (max_tokens > 0),
    max_images           integer NOT NULL CHECK (max_images >= 0),
    max_image_bytes      integer NOT NULL CHECK (max_image_bytes > 0),
    -- Whether the licensee may run a release of the models on its own GPUs.
    own_compute          boolean NOT NULL DEFAULT false,
    suspended_at         timestamptz,
    suspension_reason    text CHECK (length(suspension_reason) BETWEEN 1 AND 500),
    revoked_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text NOT NULL,
    CHECK (valid_until > valid_from),
    CHECK ((suspended_at IS NULL) = (suspension_reason IS NULL))
);
CREATE INDEX licence_licensee_idx ON lighthouse.licence (licensee_id);

-- A licensee's OAuth clients act for it (and only for it).
ALTER TABLE lighthouse.oauth_client
    ADD COLUMN licensee_id integer REFERENCES lighthouse.licensee (id);
-- A rotated secret keeps working until the overlap ends, so a client's deployments can move to
-- the new one without an outage.
ALTER TABLE lighthouse.oauth_client
    ADD COLUMN previous_secret_hash text,
    ADD COLUMN previous_secret_until timestamptz,
    ADD CONSTRAINT oauth_client_previous_secret_ck
        CHECK ((previous_secret_hash IS NULL) = (previous_secret_until IS NULL));
ALTER TABLE lighthouse.oauth_client
    ADD CONSTRAINT oauth_client_licensee_ck CHECK (kind = 'licensee' OR licensee_id IS NULL);

-- The quota ledger: per licence and period, what was used (settled) and what is reserved by
-- requests under way. used + reserved never exceeds the licence's quota (reserve_quota).
CREATE TABLE lighthouse.quota_period (
    licence_id               integer NOT NULL REFERENCES lighthouse.licence (id),
    period_start             timestamptz NOT NULL,
    used_requests            bigint NOT NULL DEFAULT 0 CHECK (used_requests >= 0),
    used_input_tokens        bigint NOT NULL DEFAULT 0 CHECK (used_input_tokens >= 0),
    used_output_tokens       bigint NOT NULL DEFAULT 0 CHECK (used_output_tokens >= 0),
    used_images              bigint NOT NULL DEFAULT 0 CHECK (used_images >= 0),
    reserved_requests        bigint NOT NULL DEFAULT 0 CHECK (reserved_requests >= 0),
    reserved_input_tokens    bigint NOT NULL DEFAULT 0 CHECK (reserved_input_tokens >= 0),
    reserved_output_tokens   bigint NOT NULL DEFAULT 0 CHECK (reserved_output_tokens >= 0),
    reserved_images          bigint NOT NULL DEFAULT 0 CHECK (reserved_images >= 0),
    PRIMARY KEY (licence_id, period_start)
);

-- What a licence has under way now: requests in flight, and this minute's admissions (requests,
-- and tokens counted at their reserved maximum until settled).
CREATE TABLE lighthouse.licence_load (
    licence_id       integer PRIMARY KEY REFERENCES lighthouse.licence (id),
    in_flight        integer NOT NULL DEFAULT 0 CHECK (in_flight >= 0),
    minute_start     timestamptz NOT NULL DEFAULT '-infinity',
    minute_requests  integer NOT NULL DEFAULT 0 CHECK (minute_requests >= 0),
    minute_tokens    bigint NOT NULL DEFAULT 0 CHECK (minute_tokens >= 0)
);

-- A request's reservation, until it is settled or released. Its lease lets a reservation that a
-- crashed gateway left behind be given back.
CREATE TABLE lighthouse.quota_reservation (
    request_id      uuid PRIMARY KEY,
    licence_id      integer NOT NULL REFERENCES lighthouse.licence (id),
    period_start    timestamptz NOT NULL,
    minute_start    timestamptz NOT NULL,
    input_tokens    bigint NOT NULL CHECK (input_tokens >= 0),
    output_tokens   bigint NOT NULL CHECK (output_tokens >= 0),
    images          integer NOT NULL CHECK (images >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz NOT NULL,
    FOREIGN KEY (licence_id, period_start) REFERENCES lighthouse.quota_period (licence_id, period_start)
);
CREATE INDEX quota_reservation_lease_idx ON lighthouse.quota_reservation (lease_until);

-- One record per metered request, written once (idempotent on the request id), never changed.
-- A failed inference is recorded with status FAILED and charged nothing.
CREATE TABLE lighthouse.usage_record (
    request_id     uuid PRIMARY KEY,
    licence_id     integer NOT NULL REFERENCES lighthouse.licence (id),
    licensee_id    integer NOT NULL REFERENCES lighthouse.licensee (id),
    -- The quota period the request was admitted in and charged to (a statement's period).
    period_start   timestamptz NOT NULL,
    client_id      text NOT NULL,
    model          text NOT NULL,
    purpose        text NOT NULL,
    status         text NOT NULL CHECK (status IN ('OK', 'FAILED', 'CANCELLED')),
    input_tokens   bigint NOT NULL CHECK (input_tokens >= 0),
    output_tokens  bigint NOT NULL CHECK (output_tokens >= 0),
    images         integer NOT NULL CHECK (images >= 0),
    streamed       boolean NOT NULL,
    latency_ms     integer NOT NULL CHECK (latency_ms >= 0),
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (status = 'OK' OR (input_tokens = 0 AND output_tokens = 0 AND images = 0))
);
CREATE INDEX usage_record_licensee_idx ON lighthouse.usage_record (licensee_id, finished_at);
CREATE INDEX usage_record_licence_idx ON lighthouse.usage_record (licence_id, finished_at);
CREATE INDEX usage_record_period_idx ON lighthouse.usage_record (licence_id, period_start);
CREATE INDEX usage_record_finished_idx ON lighthouse.usage_record (finished_at);

-- A model release for licensees with their own compute: a directory on the city's machines and
-- its manifest (files and hashes, serving config, terms), signed by the city's key.
CREATE TABLE lighthouse.model_release (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model       text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    version     text NOT NULL CHECK (version ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    directory   text NOT NULL,
    manifest    jsonb NOT NULL,
    signed      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    UNIQUE (model, version)
);

-- Usage per licence, day (in the city's time zone), model and status, rolled up from the records
-- once the day is over (``lighthouse licensing rollup``); what remains after the records' retention.
CREATE TABLE lighthouse.usage_daily (
    licence_id     integer NOT NULL REFERENCES lighthouse.licence (id),
    day            date NOT NULL,
    model          text NOT NULL,
    status         text NOT NULL,
    requests       bigint NOT NULL CHECK (requests >= 0),
    input_tokens   bigint NOT NULL CHECK (input_tokens >= 0),
    output_tokens  bigint NOT NULL CHECK (output_tokens >= 0),
    images         bigint NOT NULL CHECK (images >= 0),
    rolled_up_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (licence_id, day, model, status)
);
"""

# The identity's licensee, and the ledger's operations. The ledger's functions run as their
# owner (SECURITY DEFINER) after checking that the caller acts for the licence's licensee with
# inference:invoke: the counters are the city's, not the caller's to write directly.
FUNCTIONS = """
CREATE FUNCTION lighthouse.current_licensee() RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('lighthouse.licensee_id', true), '')::integer
$$;

-- Who reads every licensee, licence and usage record (policies: licensing.view.city).
CREATE FUNCTION lighthouse.reads_all_licences() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT (lighthouse.current_kind() = 'staff'
            AND (lighthouse.has_scope('licensing:admin') OR lighthouse.has_scope('usage:read')))
        OR (lighthouse.current_kind() = 'auditor' AND lighthouse.has_scope('usage:read'))
$$;

-- A licensee's client reading its own company's licences and usage (licensing.view.own-company).
CREATE FUNCTION lighthouse.reads_own_licences() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT lighthouse.current_kind() = 'licensee'
       AND (lighthouse.has_scope('usage:read') OR lighthouse.has_scope('inference:invoke'))
$$;

CREATE FUNCTION lighthouse.acts_for_licence(wanted integer) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, lighthouse AS $$
    SELECT lighthouse.current_kind() = 'licensee'
       AND lighthouse.has_scope('inference:invoke')
       AND EXISTS (SELECT 1 FROM lighthouse.licence l
                   WHERE l.id = wanted AND l.licensee_id = lighthouse.current_licensee())
$$;

-- The start of the quota period (a calendar day or month in the city's time zone) and of the
-- rate limits' minute that ``at`` falls in. The database's clock decides, so every gateway
-- process agrees.
CREATE FUNCTION lighthouse.quota_period_start(period text, at timestamptz, zone text)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT date_trunc(lower(period), at AT TIME ZONE zone) AT TIME ZONE zone
$$;

-- Reserve a request's largest possible cost. Returns NULL when admitted, else what refused it:
-- the licence's state ('NOT_YET_VALID', 'EXPIRED', 'SUSPENDED', 'REVOKED', 'LICENSEE_INACTIVE'),
-- the period's quota ('REQUESTS', 'INPUT_TOKENS', 'OUTPUT_TOKENS', 'IMAGES'), this minute's
-- rate ('RATE_REQUESTS', 'RATE_TOKENS') or the requests at once ('CONCURRENCY'). No counter
-- changes when refused.
CREATE FUNCTION lighthouse.reserve_quota(
    for_request uuid, for_licence integer, want_input bigint, want_output bigint, want_images integer,
    lease interval, zone text
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lighthouse AS $$
DECLARE
    terms lighthouse.licence;
    period lighthouse.quota_period;
    load lighthouse.licence_load;
    at_period timestamptz;
    at_minute timestamptz := date_trunc('minute', now());
    tokens bigint := want_input + want_output;
BEGIN
    IF NOT lighthouse.acts_for_licence(for_licence) THEN
        RAISE EXCEPTION 'not acting for licence %', for_licence USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF want_input < 0 OR want_output < 0 OR want_images < 0 THEN
        RAISE EXCEPTION 'a negative reservation' USING ERRCODE = 'check_violation';
    END IF;
    SELECT * INTO STRICT terms FROM lighthouse.licence WHERE id = for_licence;
    IF terms.revoked_at IS NOT NULL THEN
        RETURN 'REVOKED';
    ELSIF terms.suspended_at IS NOT NULL THEN
        RETURN 'SUSPENDED';
    ELSIF now() < terms.valid_from THEN
        RETURN 'NOT_YET_VALID';
    ELSIF now() >= terms.valid_until THEN
        RETURN 'EXPIRED';
    ELSIF (SELECT status FROM lighthouse.licensee WHERE id = terms.licensee_id) <> 'ACTIVE' THEN
        RETURN 'LICENSEE_INACTIVE';
    END IF;
    at_period := lighthouse.quota_period_start(terms.quota_period, now(), zone);
    INSERT INTO lighthouse.quota_period (licence_id, period_start) VALUES (for_licence, at_period)
        ON CONFLICT DO NOTHING;
    INSERT INTO lighthouse.licence_load (licence_id) VALUES (for_licence) ON CONFLICT DO NOTHING;
    -- Rows locked in one order (period, then load) by every admission and release: no deadlocks.
    SELECT * INTO STRICT period FROM lighthouse.quota_period
        WHERE licence_id = for_licence AND period_start = at_period FOR UPDATE;
    IF period.used_requests + period.reserved_requests + 1 > terms.quota_requests THEN
        RETURN 'REQUESTS';
    ELSIF period.used_input_tokens + period.reserved_input_tokens + want_input > terms.quota_input_tokens THEN
        RETURN 'INPUT_TOKENS';
    ELSIF period.used_output_tokens + period.reserved_output_tokens + want_output > terms.quota_output_tokens THEN
        RETURN 'OUTPUT_TOKENS';
    ELSIF period.used_images + period.reserved_images + want_images > terms.quota_images THEN
        RETURN 'IMAGES';
    END IF;
    SELECT * INTO STRICT load FROM lighthouse.licence_load WHERE licence_id = for_licence FOR UPDATE;
    IF load.minute_start <> at_minute THEN
        load.minute_requests := 0;
        load.minute_tokens := 0;
    END IF;
    IF load.minute_requests + 1 > terms.requests_per_minute THEN
        RETURN 'RATE_REQUESTS';
    ELSIF load.minute_tokens + tokens > terms.tokens_per_minute THEN
        RETURN 'RATE_TOKENS';
    ELSIF load.in_flight + 1 > terms.max_concurrent THEN
        RETURN 'CONCURRENCY';
    END IF;
    UPDATE lighthouse.quota_period SET
        reserved_requests = reserved_requests + 1,
        reserved_input_tokens = reserved_input_tokens + want_input,
        reserved_output_tokens = reserved_output_tokens + want_output,
        reserved_images = reserved_images + want_images
    WHERE licence_id = for_licence AND period_start = at_period;
    UPDATE lighthouse.licence_load SET
        in_flight = in_flight + 1,
        minute_start = at_minute,
        minute_requests = load.minute_requests + 1,
        minute_tokens = load.minute_tokens + tokens
    WHERE licence_id = for_licence;
    INSERT INTO lighthouse.quota_reservation
        (request_id, licence_id, period_start, minute_start, input_tokens, output_tokens, images,
         lease_until)
    VALUES (for_request, for_licence, at_period, at_minute, want_input, want_output, want_images,
            now() + lease);
    RETURN NULL;
END
$$;

-- End a reservation: settled (``succeeded``: the request and its real use, at most what was
-- reserved, are charged) or released (nothing is charged). Returns the period it was charged
-- to, or NULL if there was no such reservation (finished before, or expired): nothing changes
-- then.
CREATE FUNCTION lighthouse.finish_reservation(
    for_request uuid, succeeded boolean, spent_input bigint, spent_output bigint, spent_images integer
) RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lighthouse AS $$
DECLARE
    held lighthouse.quota_reservation;
    charged integer := CASE WHEN succeeded THEN 1 ELSE 0 END;
BEGIN
    IF NOT succeeded THEN
        spent_input := 0;
        spent_output := 0;
        spent_images := 0;
    ELSIF spent_input < 0 OR spent_output < 0 OR spent_images < 0 THEN
        RAISE EXCEPTION 'a negative use' USING ERRCODE = 'check_violation';
    END IF;
    SELECT * INTO held FROM lighthouse.quota_reservation WHERE request_id = for_request;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF NOT lighthouse.acts_for_licence(held.licence_id) AND lighthouse.current_kind() <> 'system' THEN
        RAISE EXCEPTION 'not acting for licence %', held.licence_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Same lock order as reserve_quota: period, load (the reservation row last).
    PERFORM 1 FROM lighthouse.quota_period
        WHERE licence_id = held.licence_id AND period_start = held.period_start FOR UPDATE;
    PERFORM 1 FROM lighthouse.licence_load WHERE licence_id = held.licence_id FOR UPDATE;
    DELETE FROM lighthouse.quota_reservation WHERE request_id = for_request;
    IF NOT FOUND THEN
        RETURN NULL;  -- finished by someone else while we waited for the locks
    END IF;
    UPDATE lighthouse.quota_period SET
        reserved_requests = reserved_requests - 1,
        reserved_input_tokens = reserved_input_tokens - held.input_tokens,
        reserved_output_tokens = reserved_output_tokens - held.output_tokens,
        reserved_images = reserved_images - held.images,
        used_requests = used_requests + charged,
        used_input_tokens = used_input_tokens + least(spent_input, held.input_tokens),
        used_output_tokens = used_output_tokens + least(spent_output, held.output_tokens),
        used_images = used_images + least(spent_images, held.images)
    WHERE licence_id = held.licence_id AND period_start = held.period_start;
    -- The minute's tokens stay counted at what was reserved: a rate limit admits by what a
    -- request may cost, so how many requests fit in a minute does not depend on timing.
    UPDATE lighthouse.licence_load SET in_flight = in_flight - 1
    WHERE licence_id = held.licence_id;
    RETURN held.period_start;
END
$$;

-- Reservations whose lease ran out (their gateway died with them): released, charging nothing.
-- Returns how many.
CREATE FUNCTION lighthouse.expire_reservations(up_to integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lighthouse AS $$
DECLARE
    expired uuid;
    released integer := 0;
BEGIN
    IF lighthouse.current_kind() <> 'system' THEN
        RAISE EXCEPTION 'only the service releases expired reservations'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    FOR expired IN
        SELECT request_id FROM lighthouse.quota_reservation
        WHERE lease_until < now() ORDER BY lease_until LIMIT up_to
    LOOP
        IF lighthouse.finish_reservation(expired, false, 0, 0, 0) IS NOT NULL THEN
            released := released + 1;
        END IF;
    END LOOP;
    RETURN released;
END
$$;

-- A licensee's OAuth clients, managed by the city's licensing officers through the graph: the
-- application role writes no client itself; these functions create, re-key and disable only
-- clients of a licensee, with only the scopes a licensee's client may hold.
CREATE FUNCTION lighthouse.licensing_officer() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT lighthouse.current_kind() = 'staff' AND lighthouse.has_scope('licensing:admin')
$$;

CREATE FUNCTION lighthouse.register_licensee_client(
    new_client text, new_name text, new_secret_hash text, new_scopes text[], for_licensee integer
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lighthouse AS $$
BEGIN
    IF NOT lighthouse.licensing_officer() THEN
        RAISE EXCEPTION 'only licensing officers register licensees'' clients'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT new_scopes <@ ARRAY['inference:invoke', 'usage:read']
       OR cardinality(new_scopes) = 0 THEN
        RAISE EXCEPTION 'a licensee''s client holds inference:invoke and usage:read at most'
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO lighthouse.oauth_client
        (client_id, name, secret_hash, kind, bureau_id, roles, scopes, licensee_id)
    VALUES (new_client, new_name, new_secret_hash, 'licensee', NULL, '{}', new_scopes, for_licensee);
END
$$;

-- Re-key (``overlap``: how long the old secret still works) or disable a licensee's client;
-- false if there is no such enabled client of a licensee.
CREATE FUNCTION lighthouse.rekey_licensee_client(
    target text, new_secret_hash text, overlap interval
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lighthouse AS $$
BEGIN
    IF NOT lighthouse.licensing_officer() THEN
        RAISE EXCEPTION 'only licensing officers re-key licensees'' clients'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE lighthouse.oauth_client
    SET previous_secret_hash = secret_hash, previous_secret_until = now() + overlap,
        secret_hash = new_secret_hash
    WHERE client_id = target AND kind = 'licensee' AND disabled_at IS NULL;
    RETURN FOUND;
END
$$;

CREATE FUNCTION lighthouse.disable_licensee_client(target text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lighthouse AS $$
BEGIN
    IF NOT lighthouse.licensing_officer() THEN
        RAISE EXCEPTION 'only licensing officers disable licensees'' clients'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE lighthouse.oauth_client SET disabled_at = now()
    WHERE client_id = target AND kind = 'licensee' AND disabled_at IS NULL;
    RETURN FOUND;
END
$$;

-- Roll usage records up per licence, day (in ``zone``), model and status for the days that are
-- over and not rolled up yet, then delete records older than ``keep`` whose day is rolled up.
-- For the city's licensing officers (and the service); returns (rows rolled up, records deleted).
-- The usage records are append-only but for this retention.
CREATE FUNCTION lighthouse.roll_up_usage(zone text, keep interval)
RETURNS TABLE (rolled_up bigint, deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, lighthouse AS $$
DECLARE
    today date := (now() AT TIME ZONE zone)::date;
    done date;
    rolled bigint;
    removed bigint;
BEGIN
    IF NOT ((lighthouse.current_kind() = 'staff' AND lighthouse.has_scope('licensing:admin'))
            OR lighthouse.current_kind() = 'system') THEN
        RAISE EXCEPTION 'only licensing officers roll usage up' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF keep < interval '1 day' THEN
        RAISE EXCEPTION 'keep usage records at least a day' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One roll-up at a time: two would both see the same days as not done.
    PERFORM pg_advisory_xact_lock(hashtext('lighthouse.roll_up_usage'));
    SELECT max(day) INTO done FROM lighthouse.usage_daily;
    INSERT INTO lighthouse.usage_daily
        (licence_id, day, model, status, requests, input_tokens, output_tokens, images)
    SELECT u.licence_id, (u.finished_at AT TIME ZONE zone)::date AS day, u.model, u.status,
           count(*), sum(u.input_tokens), sum(u.output_tokens), sum(u.images)
    FROM lighthouse.usage_record u
    WHERE (u.finished_at AT TIME ZONE zone)::date < today
      AND (done IS NULL OR (u.finished_at AT TIME ZONE zone)::date > done)
    GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS rolled = ROW_COUNT;
    DELETE FROM lighthouse.usage_record u
    WHERE u.finished_at < now() - keep
      AND EXISTS (SELECT 1 FROM lighthouse.usage_daily d
                  WHERE d.licence_id = u.licence_id AND d.model = u.model AND d.status = u.status
                    AND d.day = (u.finished_at AT TIME ZONE zone)::date);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN QUERY SELECT rolled, removed;
END
$$;
"""

POLICIES = """
-- Licensees and licences: the city's licensing administrators see and manage all; a licensee
-- sees itself and its own licences; nobody else sees any.
ALTER TABLE lighthouse.licensee ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.licensee FORCE ROW LEVEL SECURITY;
CREATE POLICY licensee_read ON lighthouse.licensee FOR SELECT USING (
    lighthouse.reads_all_licences()
    OR (lighthouse.reads_own_licences() AND id = lighthouse.current_licensee())
);
CREATE POLICY licensee_admin ON lighthouse.licensee FOR ALL
    USING (lighthouse.current_kind() = 'staff' AND lighthouse.has_scope('licensing:admin'))
    WITH CHECK (lighthouse.current_kind() = 'staff' AND lighthouse.has_scope('licensing:admin'));

ALTER TABLE lighthouse.licence ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.licence FORCE ROW LEVEL SECURITY;
CREATE POLICY licence_read ON lighthouse.licence FOR SELECT USING (
    lighthouse.reads_all_licences()
    OR (lighthouse.reads_own_licences() AND licensee_id = lighthouse.current_licensee())
);
CREATE POLICY licence_admin ON lighthouse.licence FOR ALL
    USING (lighthouse.current_kind() = 'staff' AND lighthouse.has_scope('licensing:admin'))
    WITH CHECK (lighthouse.current_kind() = 'staff' AND lighthouse.has_scope('licensing:admin'));

-- The ledger is read by the licensee it belongs to and by the city's administrators and
-- auditors (usage:read); it is written only through the functions above.
ALTER TABLE lighthouse.quota_period ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.quota_period FORCE ROW LEVEL SECURITY;
CREATE POLICY quota_period_read ON lighthouse.quota_period FOR SELECT USING (
    lighthouse.reads_all_licences()
    OR (lighthouse.reads_own_licences() AND EXISTS (
        SELECT 1 FROM lighthouse.licence l
        WHERE l.id = licence_id AND l.licensee_id = lighthouse.current_licensee()))
);
ALTER TABLE lighthouse.licence_load ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.licence_load FORCE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.quota_reservation ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.quota_reservation FORCE ROW LEVEL SECURITY;

-- The ledger's functions run as the schema owner (current_user differs from the session's role
-- only inside a definer function), which row-level security binds too: these let the functions,
-- and nothing else, read and write the ledger, as incident_read_definer does for incidents.
CREATE POLICY quota_period_ledger ON lighthouse.quota_period FOR ALL
    USING (current_user <> session_user) WITH CHECK (current_user <> session_user);
CREATE POLICY licence_load_ledger ON lighthouse.licence_load FOR ALL
    USING (current_user <> session_user) WITH CHECK (current_user <> session_user);
CREATE POLICY quota_reservation_ledger ON lighthouse.quota_reservation FOR ALL
    USING (current_user <> session_user) WITH CHECK (current_user <> session_user);
CREATE POLICY licence_read_definer ON lighthouse.licence FOR SELECT
    USING (current_user <> session_user);
CREATE POLICY licensee_read_definer ON lighthouse.licensee FOR SELECT
    USING (current_user <> session_user);

-- Releases: the city's licensing officers publish and see all; a licensee's client sees the
-- releases of the models a usable licence of its company lets it run on its own compute.
ALTER TABLE lighthouse.model_release ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.model_release FORCE ROW LEVEL SECURITY;
CREATE POLICY model_release_read ON lighthouse.model_release FOR SELECT USING (
    lighthouse.reads_all_licences()
    OR (lighthouse.reads_own_licences() AND EXISTS (
        SELECT 1 FROM lighthouse.licence l
        WHERE l.licensee_id = lighthouse.current_licensee() AND l.own_compute
          AND model = ANY (l.models) AND l.revoked_at IS NULL AND l.suspended_at IS NULL
          AND now() >= l.valid_from AND now() < l.valid_until))
);
CREATE POLICY model_release_publish ON lighthouse.model_release FOR INSERT WITH CHECK (
    lighthouse.current_kind() = 'staff' AND lighthouse.has_scope('licensing:admin')
);

ALTER TABLE lighthouse.usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.usage_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY usage_daily_rollup ON lighthouse.usage_daily FOR ALL
    USING (current_user <> session_user) WITH CHECK (current_user <> session_user);
CREATE POLICY usage_record_retention ON lighthouse.usage_record FOR ALL
    USING (current_user <> session_user) WITH CHECK (current_user <> session_user);
CREATE POLICY usage_daily_read ON lighthouse.usage_daily FOR SELECT USING (
    lighthouse.reads_all_licences()
    OR (lighthouse.reads_own_licences() AND EXISTS (
        SELECT 1 FROM lighthouse.licence l
        WHERE l.id = licence_id AND l.licensee_id = lighthouse.current_licensee()))
);

ALTER TABLE lighthouse.usage_record ENABLE ROW LEVEL SECURITY;
ALTER TABLE lighthouse.usage_record FORCE ROW LEVEL SECURITY;
CREATE POLICY usage_record_read ON lighthouse.usage_record FOR SELECT USING (
    lighthouse.reads_all_licences()
    OR (lighthouse.reads_own_licences() AND licensee_id = lighthouse.current_licensee())
);
CREATE POLICY usage_record_create ON lighthouse.usage_record FOR INSERT WITH CHECK (
    lighthouse.acts_for_licence(licence_id) AND licensee_id = lighthouse.current_licensee()
);
"""

GRANTS = """
GRANT SELECT, INSERT, UPDATE ON lighthouse.licensee, lighthouse.licence TO {role};
GRANT SELECT ON lighthouse.quota_period TO {role};
GRANT SELECT, INSERT ON lighthouse.usage_record TO {role};
GRANT SELECT ON lighthouse.usage_daily TO {role};
GRANT SELECT, INSERT ON lighthouse.model_release TO {role};
REVOKE ALL ON FUNCTION lighthouse.acts_for_licence, lighthouse.reserve_quota,
    lighthouse.finish_reservation, lighthouse.expire_reservations, lighthouse.roll_up_usage,
    lighthouse.register_licensee_client, lighthouse.rekey_licensee_client,
    lighthouse.disable_licensee_client
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lighthouse.acts_for_licence, lighthouse.reserve_quota,
    lighthouse.finish_reservation, lighthouse.expire_reservations, lighthouse.roll_up_usage,
    lighthouse.register_licensee_client, lighthouse.rekey_licensee_client,
    lighthouse.disable_licensee_client
    TO {role};
"""


def upgrade() -> None:
    execute_script(TABLES)
    execute_script(FUNCTIONS)
    execute_script(POLICIES)
    execute_script(GRANTS.format(role=app_role()))


def downgrade() -> None:
    raise RuntimeError("0006 cannot be downgraded: the usage records are the city's bill")
