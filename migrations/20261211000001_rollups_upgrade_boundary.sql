-- The upgrade boundary of the minute rollups. A fleetsink from before them stored rows
-- without registering their minutes in metric_rollup_marks; if a version with rollups
-- then writes rows in one of those minutes and seals it, a reader would take the minute
-- from the rollups alone and miss the older version's rows. So when this migration runs
-- on a database that already holds metrics, every minute from a day before to a day
-- after it gets a mark no worker ever seals (run 0, worker -1): those minutes are read
-- from the rows. A day either way is ingest.max_clock_skew's default: an older version
-- stored readings stamped by robot clocks up to that far behind or ahead (and messages
-- a broker kept queued across the upgrade are stamped behind). A fresh database has no
-- such rows and gets no marks. Retention deletes these marks with the day's metrics.
INSERT INTO metric_rollup_marks (minute, run, worker, sealed)
SELECT m, 0, -1, false
FROM generate_series(
         date_trunc('minute', now() - interval '1 day'),
         date_trunc('minute', now() + interval '1 day'),
         interval '1 minute') AS m
WHERE EXISTS (SELECT 1 FROM metrics)
ON CONFLICT (minute, run, worker) DO NOTHING;
