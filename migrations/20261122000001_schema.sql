-- fleetsink schema (SPEC §4.1, §6.2). Day partitions of metrics, logs and ingest_errors
-- are created by partition maintenance (src/db/partitions.rs); each table has a default
-- partition so a row never fails for want of one.

CREATE TABLE robots (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    robot_id                text NOT NULL UNIQUE,
    name                    text,
    description             text,
    location                text,
    status                  text NOT NULL DEFAULT 'unknown',
    ip_address              text,
    camera_url              text,
    battery_threshold_low       double precision NOT NULL DEFAULT 20,
    battery_threshold_critical  double precision NOT NULL DEFAULT 10,
    temp_threshold_warning      double precision NOT NULL DEFAULT 70,
    temp_threshold_critical     double precision NOT NULL DEFAULT 80,
    settings                jsonb NOT NULL DEFAULT '{}'::jsonb,
    first_seen              timestamptz,
    last_seen               timestamptz,
    is_active               boolean NOT NULL DEFAULT true,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE metrics (
    robot_id    text NOT NULL,
    ts          timestamptz NOT NULL,
    name        text NOT NULL,
    value       double precision NOT NULL,
    unit        text,
    UNIQUE (robot_id, name, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE metrics_default PARTITION OF metrics DEFAULT;

CREATE TABLE logs (
    robot_id    text,
    ts          timestamptz NOT NULL,
    level       text NOT NULL,
    category    text NOT NULL,
    source      text,
    message     text NOT NULL,
    details     jsonb,
    -- Fingerprint of the originating message: a redelivery does not add a row.
    dedup_key   bigint NOT NULL,
    UNIQUE (dedup_key, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE logs_default PARTITION OF logs DEFAULT;
CREATE INDEX logs_robot_ts ON logs (robot_id, ts DESC);
CREATE INDEX logs_ts ON logs (ts DESC);

CREATE TABLE jobs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    robot_id            text NOT NULL,
    task_name           text,
    status              text NOT NULL CHECK (status IN ('active', 'completed', 'cancelled', 'failed')),
    phase               text,
    start_time          timestamptz NOT NULL,
    end_time            timestamptz,
    items_done          bigint,
    items_total         bigint,
    percent_complete    double precision,
    last_item           jsonb,
    success             boolean,
    cancel_reason       text,
    elapsed_time        double precision,
    estimated_duration  double precision,
    action_duration     double precision,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- At most one active job per robot.
CREATE UNIQUE INDEX jobs_one_active ON jobs (robot_id) WHERE status = 'active';
CREATE INDEX jobs_robot_start ON jobs (robot_id, start_time DESC);
CREATE UNIQUE INDEX jobs_robot_start_unique ON jobs (robot_id, start_time);

CREATE TABLE ingest_errors (
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    payload_size integer NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL,
    client_id   text,
    received_at timestamptz NOT NULL
) PARTITION BY RANGE (received_at);
CREATE TABLE ingest_errors_default PARTITION OF ingest_errors DEFAULT;
CREATE INDEX ingest_errors_received ON ingest_errors (received_at DESC);

CREATE TABLE mqtt_users (
    username        text PRIMARY KEY,
    password_hash   text NOT NULL,
    is_superuser    boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mqtt_acls (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username    text REFERENCES mqtt_users (username) ON DELETE CASCADE,
    topic       text NOT NULL,
    rw          integer NOT NULL CHECK (rw BETWEEN 1 AND 7),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mqtt_acls_username ON mqtt_acls (username);
