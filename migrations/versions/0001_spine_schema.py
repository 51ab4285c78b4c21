"""The spine: bureaus, routing, assets, incidents with their event log, work orders and transfers.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from migrations.support import app_role, execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


SCHEMA = """
CREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS earthdistance WITH SCHEMA public;

CREATE TABLE lighthouse.bureau (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code ~ '^[A-Z][A-Z0-9_]{1,39}$'),
    name_zh     text NOT NULL,
    name_en     text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('CITY_BUREAU', 'COMMISSION', 'STATE_ENTERPRISE')),
    joint_service_centre boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The routing table: which bureau is responsible for a kind of problem, and how soon.
CREATE TABLE lighthouse.incident_category (
    code                   text PRIMARY KEY CHECK (code ~ '^[A-Z][A-Z0-9_]{1,39}$'),
    name_zh                text NOT NULL,
    name_en                text NOT NULL,
    responsible_bureau_id  integer NOT NULL REFERENCES lighthouse.bureau (id),
    sla_working_days       integer CHECK (sla_working_days BETWEEN 1 AND 60),
    sla_hours              integer CHECK (sla_hours BETWEEN 1 AND 720),
    CONSTRAINT incident_category_one_sla CHECK ((sla_working_days IS NULL) <> (sla_hours IS NULL))
);

CREATE TABLE lighthouse.asset (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code          text NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 64),
    kind          text NOT NULL CHECK (kind IN ('CAMERA', 'STREET_LIGHT', 'ROAD_SEGMENT', 'DRAIN',
                      'TRAFFIC_SIGNAL', 'PUMPING_STATION', 'STREET_TREE', 'UTILITY_POLE', 'HYDRANT')),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    bureau_id     integer NOT NULL REFERENCES lighthouse.bureau (id),
    latitude      double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude     double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    installed_on  date,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL
);
CREATE INDEX asset_bureau_idx ON lighthouse.asset (bureau_id, id);
CREATE INDEX asset_earth_idx ON lighthouse.asset USING gist (public.ll_to_earth(latitude, longitude));
CREATE INDEX asset_point_idx ON lighthouse.asset USING gist (point(longitude, latitude));

CREATE TABLE lighthouse.incident (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title                  text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description            text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    category               text NOT NULL REFERENCES lighthouse.incident_category (code),
    status                 text NOT NULL CHECK (status IN ('DETECTED', 'VERIFIED', 'DISPATCHED',
                               'IN_PROGRESS', 'RESOLVED', 'CLOSED')),
    closing_reason         text CHECK (closing_reason IN ('FIXED', 'FALSE_POSITIVE', 'DUPLICATE',
                               'NOT_RESPONSIBLE', 'TRANSFERRED')),
    source                 text NOT NULL CHECK (source IN ('VLM', 'CITIZEN_1999', 'STAFF', 'SENSOR')),
    responsible_bureau_id  integer NOT NULL REFERENCES lighthouse.bureau (id),
    reporting_bureau_id    integer REFERENCES lighthouse.bureau (id),
    asset_id               bigint REFERENCES lighthouse.asset (id),
    latitude               double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude              double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    -- personal data (Personal Data Protection Act): the reporter's contact details
    reporter_name          text CHECK (length(reporter_name) <= 200),
    reporter_phone         text CHECK (length(reporter_phone) <= 40),
    reporter_email         text CHECK (length(reporter_email) <= 320),
    reported_at            timestamptz NOT NULL,
    due_at                 timestamptz NOT NULL,
    closed_at              timestamptz,
    duplicate_of_id        bigint REFERENCES lighthouse.incident (id),
    version                integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    created_by             text NOT NULL,
    CONSTRAINT incident_closed_has_reason CHECK ((status = 'CLOSED') = (closing_reason IS NOT NULL)),
    CONSTRAINT incident_closed_has_time CHECK ((status = 'CLOSED') = (closed_at IS NOT NULL)),
    CONSTRAINT incident_duplicate_link CHECK (
        coalesce(closing_reason = 'DUPLICATE', false) = (duplicate_of_id IS NOT NULL)
        AND duplicate_of_id <> id)
);
-- Index the orderings the graph pages by (newest first, overall and per bureau and status).
CREATE INDEX incident_reported_idx ON lighthouse.incident (reported_at DESC, id DESC);
CREATE INDEX incident_bureau_reported_idx
    ON lighthouse.incident (responsible_bureau_id, reported_at DESC, id DESC);
CREATE INDEX incident_status_reported_idx ON lighthouse.incident (status, reported_at DESC, id DESC);
CREATE INDEX incident_due_idx ON lighthouse.incident (due_at, id);
CREATE INDEX incident_asset_idx ON lighthouse.incident (asset_id) WHERE asset_id IS NOT NULL;
CREATE INDEX incident_duplicate_of_idx ON lighthouse.incident (duplicate_of_id)
    WHERE duplicate_of_id IS NOT NULL;
CREATE INDEX incident_earth_idx ON lighthouse.incident
    USING gist (public.ll_to_earth(latitude, longitude));
CREATE INDEX incident_point_idx ON lighthouse.incident USING gist (point(longitude, latitude));

-- The append-only history of every incident.
CREATE TABLE lighthouse.incident_event (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  bigint NOT NULL REFERENCES lighthouse.incident (id),
    kind         text NOT NULL CHECK (kind ~ '^[A-Z_]{2,40}$'),
    from_status  text,
    to_status    text,
    actor        text NOT NULL,
    note         text NOT NULL DEFAULT '' CHECK (length(note) <= 4000),
    data         jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incident_event_incident_idx ON lighthouse.incident_event (incident_id, id);

CREATE TABLE lighthouse.work_order (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id   bigint NOT NULL REFERENCES lighthouse.incident (id),
    bureau_id     integer NOT NULL REFERENCES lighthouse.bureau (id),
    status        text NOT NULL CHECK (status IN ('OPEN', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED')),
    crew          text NOT NULL CHECK (length(crew) BETWEEN 1 AND 200),
    instructions  text NOT NULL DEFAULT '' CHECK (length(instructions) <= 4000),
    due_at        timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    finished_at   timestamptz,
    CONSTRAINT work_order_finished CHECK (
        (status IN ('COMPLETED', 'CANCELLED')) = (finished_at IS NOT NULL))
);
CREATE INDEX work_order_incident_idx ON lighthouse.work_order (incident_id, status, id);

CREATE TABLE lighthouse.incident_transfer (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id      bigint NOT NULL REFERENCES lighthouse.incident (id),
    from_bureau_id   integer NOT NULL REFERENCES lighthouse.bureau (id),
    to_bureau_id     integer NOT NULL REFERENCES lighthouse.bureau (id),
    reason           text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    actor            text NOT NULL,
    transferred_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT incident_transfer_elsewhere CHECK (from_bureau_id <> to_bureau_id)
);
CREATE INDEX incident_transfer_incident_idx ON lighthouse.incident_transfer (incident_id, id);

-- Creating mutations remember their idempotency keys, per caller.
CREATE TABLE lighthouse.idempotency_key (
    subject       text NOT NULL,
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    operation     text NOT NULL,
    request_hash  text NOT NULL,
    resource_id   bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, key)
);
CREATE INDEX idempotency_key_created_idx ON lighthouse.idempotency_key (created_at);

-- History is append-only, whoever connects.
CREATE FUNCTION lighthouse.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER incident_event_append_only
    BEFORE UPDATE OR DELETE ON lighthouse.incident_event
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();
CREATE TRIGGER incident_event_no_truncate
    BEFORE TRUNCATE ON lighthouse.incident_event
    FOR EACH STATEMENT EXECUTE FUNCTION lighthouse.refuse_change();
CREATE TRIGGER incident_transfer_append_only
    BEFORE UPDATE OR DELETE ON lighthouse.incident_transfer
    FOR EACH ROW EXECUTE FUNCTION lighthouse.refuse_change();

-- Changes to incidents are announced on commit, so every gateway process can feed subscriptions.
CREATE FUNCTION lighthouse.announce_incident_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lighthouse_incident_changes', json_build_object(
        'id', NEW.id,
        'version', NEW.version,
        'op', TG_OP,
        'status', NEW.status,
        'responsible_bureau_id', NEW.responsible_bureau_id
    )::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER incident_announce
    AFTER INSERT OR UPDATE ON lighthouse.incident
    FOR EACH ROW EXECUTE FUNCTION lighthouse.announce_incident_change();
"""

GRANTS = """
GRANT USAGE ON SCHEMA lighthouse TO {role};
GRANT SELECT ON lighthouse.alembic_version, lighthouse.bureau, lighthouse.incident_category TO {role};
GRANT SELECT, INSERT, UPDATE ON lighthouse.asset, lighthouse.incident, lighthouse.work_order TO {role};
GRANT SELECT, INSERT ON lighthouse.incident_event, lighthouse.incident_transfer TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON lighthouse.idempotency_key TO {role};
"""


def upgrade() -> None:
    role = app_role()
    # Roles are cluster-wide: create the application role only if the DBAs have not already
    # (looked up first: a schema owner without CREATEROLE may not even try to create one).
    execute_script(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            -- Created by another migration at the same moment: the lookup above cannot see a
            -- role not yet committed, and CREATE ROLE then fails on pg_authid's unique index.
            NULL;
        END
        $$;
        """
    )
    execute_script(SCHEMA)
    execute_script(GRANTS.format(role=role))


def downgrade() -> None:
    role = app_role()
    execute_script(
        f"""
        REVOKE ALL ON ALL TABLES IN SCHEMA lighthouse FROM {role};
        REVOKE USAGE ON SCHEMA lighthouse FROM {role};
        DROP TABLE lighthouse.idempotency_key, lighthouse.incident_transfer, lighthouse.work_order,
            lighthouse.incident_event, lighthouse.incident, lighthouse.asset,
            lighthouse.incident_category, lighthouse.bureau;
        DROP FUNCTION lighthouse.announce_incident_change(), lighthouse.refuse_change();
        """
    )
