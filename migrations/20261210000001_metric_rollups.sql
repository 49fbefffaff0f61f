-- Per-minute rollups of the metrics, for the bucketed query (GET
-- /api/v1/robots/{id}/metrics with a bucket of whole minutes): a day at 1-minute buckets
-- reads ~1,440 rollup rows instead of every message of the day.
--
-- The sink keeps, per worker, the minimum, maximum, sum and newest value of what it
-- inserted in each (robot, metric set, minute) and writes them once the minute is over,
-- one row per robot and minute holding all its sets, up to 100 rows with each batch
-- (src/db/writes/rollups.rs). A row is a partial: a robot's minute may have several (two
-- instances, a row that came late), and a reader combines them. Per set folded in,
-- `set_ids`, `ns` (messages), `last_ts` (the newest message's time: which partial holds
-- the newest value) and `offs` (where the set's block starts in `vals`, 0-based); the
-- block holds, for the set's names in their order, the minimums, then the maximums, the
-- sums and the newest values (4 x the set's size). One row per robot minute rather than
-- per set: TonyPi's simulator sends 15 sensor readings as 15 one-value sets, ~19 sets a
-- minute, so per-set rows would be a row per 3.7 messages.
CREATE TABLE metric_rollups (
    minute  timestamptz NOT NULL,
    robot   integer NOT NULL,
    set_ids integer[] NOT NULL,
    ns      integer[] NOT NULL,
    last_ts timestamptz[] NOT NULL,
    offs    integer[] NOT NULL,
    vals    double precision[] NOT NULL
) PARTITION BY RANGE (minute);
-- A TonyPi robot's minute is ~2 KB: kept inline and uncompressed (below 8 KB), so a
-- reader's subscripts do not decompress the row again and again. Day partitions get
-- the same setting (src/db/maintenance/days.rs).
CREATE TABLE metric_rollups_default PARTITION OF metric_rollups DEFAULT
    WITH (toast_tuple_target = 8160);
CREATE INDEX metric_rollups_robot_minute ON metric_rollups (robot, minute);
ALTER TABLE metric_rollups ALTER COLUMN vals SET STATISTICS 0;
ALTER TABLE metric_rollups ALTER COLUMN last_ts SET STATISTICS 0;

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
