-- Planner statistics only for the columns queries filter, join or sort on. The metric
-- values (`metrics.vals`, `metric_latest.vals`) and the logs' `details` are read, never
-- searched, and gathering their statistics was about half of each ANALYZE of those
-- tables: at 10,000 robots autovacuum analyzes them about once a minute, in a burst
-- the batches wait behind (BENCHMARKS.md, "Fourth session"). ALTER TABLE reaches every
-- partition there is; a new day partition copies its table's targets
-- (src/db/maintenance/days.rs).
ALTER TABLE metrics ALTER COLUMN vals SET STATISTICS 0;
ALTER TABLE metric_latest ALTER COLUMN vals SET STATISTICS 0;
ALTER TABLE logs ALTER COLUMN details SET STATISTICS 0;
