-- Per-minute rollups of the metrics, for the bucketed query (GET
-- /api/v1/robots/{id}/metrics with a bucket of whole minutes): a day at 1-minute buckets
-- reads ~1,440 rollup rows per metric set instead of every message of the day.
--
-- The sink keeps, per worker, the minimum, maximum, sum and newest value of what it
-- inserted in each (robot, metric set, minute) and writes them once the minute is over,
-- a few hundred rows with each batch (src/db/writes/rollups.rs). A row is a partial: a
-- (robot, set, minute) may have several (two instances, a row that came late), and a
-- reader combines them. `vals` holds, for the set's names in their order, the minimums,
-- then the maximums, the sums and the newest values (4 x the set's size).
CREATE TABLE metric_rollups (
    minute  timestamptz NOT NULL,
    robot   integer NOT NULL,
    set_id  integer NOT NULL,
    -- Messages folded in.
    n       integer NOT NULL,
    -- The newest message's time (which partial holds the minute's newest value).
    last_ts timestamptz NOT NULL,
    vals    double precision[] NOT NULL
) PARTITION BY RANGE (minute);
CREATE TABLE metric_rollups_default PARTITION OF metric_rollups DEFAULT;
-- A robot's sets of the wanted names, minute range: only the rows the query reads.
CREATE INDEX metric_rollups_robot_set_minute ON metric_rollups (robot, set_id, minute);
ALTER TABLE metric_rollups ALTER COLUMN vals SET STATISTICS 0;

-- Which minutes the rollups cover completely. A sink worker registers a minute (sealed
-- false) in the transaction of the first rows it inserts in it, and seals it in the
-- transaction that writes its last partial of that minute; `run` is random per process
-- start. A reader takes a minute from `metric_rollups` only when it has marks and all of
-- them are sealed; any other minute it reads from `metrics`. So rows whose partials were
-- lost (a process killed before writing them) are read raw, never half-counted, and
-- minutes from before this table, or restored from an archive, are read raw too.
CREATE TABLE metric_rollup_marks (
    minute  timestamptz NOT NULL,
    run     bigint NOT NULL,
    worker  integer NOT NULL,
    sealed  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (minute, run, worker)
);
