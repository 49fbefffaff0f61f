-- The Logs page's search (`/api/v1/logs?search=word`: message ILIKE '%word%' within a
-- time range, newest first) reads a trigram index instead of every row of the range
-- when the word is rare; for a common word the planner keeps the ordered scan of
-- logs_ts_id, which finds a page of matches in a few thousand rows (BENCHMARKS.md,
-- "Logs page"). pg_trgm ships with PostgreSQL (Debian's postgresql-15 package, the
-- contrib package elsewhere) and is a trusted extension: the database owner may
-- create it. Day partitions get the index as they are attached.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX logs_message_trgm ON logs USING gin (message gin_trgm_ops);

-- (ts DESC) is the leading column of logs_ts_id (ts DESC, id DESC), which serves every
-- query it served: each insert paid for both.
DROP INDEX logs_ts;
