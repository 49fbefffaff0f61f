-- Storage v2: compact metric rows (ARCHITECTURE.md "Metric storage", BENCHMARKS.md).
--
-- One row per message and robot instead of one row per value: the row holds the
-- robot's integer key, the time, the id of the message's *set* of metric names, and the
-- values in the order of that set. Names (with their unit) and name sets are small
-- dictionaries, cached in the daemon and extended inside the batch's transaction.
-- `metric_values` gives the plain (robot_id, name, unit, ts, value) shape.
--
-- Existing data is converted: all values of one robot at one timestamp become one row.

CREATE TABLE metric_names (
    id      integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    text NOT NULL,
    -- '' when the reading had no unit (a unique key cannot treat NULLs as equal on
    -- PostgreSQL 14); the view shows NULL.
    unit    text NOT NULL DEFAULT '',
    UNIQUE (name, unit)
);

CREATE TABLE metric_sets (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- metric_names ids, in the order of the values in metrics.vals.
    name_ids    integer[] NOT NULL UNIQUE CHECK (cardinality(name_ids) > 0)
);

-- The old table and its partitions step aside under new names.
ALTER TABLE metrics RENAME TO metrics_v1;
DO $$
DECLARE p record;
BEGIN
    FOR p IN SELECT c.relname FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'metrics_v1'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', p.relname, p.relname || '_v1');
    END LOOP;
END $$;

CREATE TABLE metrics (
    ts      timestamptz NOT NULL,
    robot   integer NOT NULL,
    set_id  integer NOT NULL,
    vals    double precision[] NOT NULL,
    -- Idempotency (a redelivered message has the same robot, time and names) and the
    -- per-robot time-range index every query of one robot uses.
    UNIQUE (robot, ts, set_id)
) PARTITION BY RANGE (ts);
CREATE TABLE metrics_default PARTITION OF metrics DEFAULT;

-- The old day partitions' ranges, recreated under their old names.
DO $$
DECLARE p record;
BEGIN
    FOR p IN SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'metrics_v1'::regclass AND c.relname <> 'metrics_default_v1'
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF metrics %s',
                       left(p.relname, length(p.relname) - 3), p.bound);
    END LOOP;
END $$;

ALTER TABLE robots ALTER COLUMN id TYPE integer;

INSERT INTO robots (robot_id)
SELECT DISTINCT robot_id FROM metrics_v1
ON CONFLICT (robot_id) DO NOTHING;

INSERT INTO metric_names (name, unit)
SELECT DISTINCT name, COALESCE(unit, '') FROM metrics_v1;

WITH grouped AS (
    SELECT m.robot_id, m.ts,
           array_agg(n.id ORDER BY n.id) AS name_ids,
           array_agg(m.value ORDER BY n.id) AS vals
    FROM metrics_v1 m
    JOIN metric_names n ON n.name = m.name AND n.unit = COALESCE(m.unit, '')
    GROUP BY m.robot_id, m.ts
), sets AS (
    INSERT INTO metric_sets (name_ids)
    SELECT DISTINCT name_ids FROM grouped
    RETURNING id, name_ids
)
INSERT INTO metrics (ts, robot, set_id, vals)
SELECT g.ts, r.id, s.id, g.vals
FROM grouped g
JOIN sets s ON s.name_ids = g.name_ids
JOIN robots r ON r.robot_id = g.robot_id;

DROP TABLE metrics_v1;

CREATE VIEW metric_values AS
SELECT r.robot_id, n.name, NULLIF(n.unit, '') AS unit, m.ts, v.value
FROM metrics m
JOIN robots r ON r.id = m.robot
JOIN metric_sets s ON s.id = m.set_id
CROSS JOIN LATERAL unnest(s.name_ids, m.vals) AS v(name_id, value)
JOIN metric_names n ON n.id = v.name_id;

COMMENT ON VIEW metric_values IS
    'One row per metric value: the plain shape of the compact metrics table.';
