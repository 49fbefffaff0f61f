-- The newest row of each of a robot's metric sets, maintained by the batch that writes
-- `metrics` (one upsert per robot and set per batch). `/latest`, TonyPi's
-- `robot-data/latest`, `/status` and `/servos` read it by primary key instead of
-- searching a day of the robot's rows for its newest ones (BENCHMARKS.md).
CREATE TABLE metric_latest (
    robot   integer NOT NULL,
    set_id  integer NOT NULL,
    ts      timestamptz NOT NULL,
    vals    double precision[] NOT NULL,
    PRIMARY KEY (robot, set_id)
) WITH (fillfactor = 50); -- room on each page for HOT updates (nothing indexed changes)

INSERT INTO metric_latest (robot, set_id, ts, vals)
SELECT DISTINCT ON (robot, set_id) robot, set_id, ts, vals
FROM metrics
ORDER BY robot, set_id, ts DESC;
