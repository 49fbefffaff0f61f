-- A stable id per log row, for the API (TonyPi's logs carry an `id`) and keyset
-- pagination on (ts, id). A sequence default rather than an identity column: day
-- partitions are created as `LIKE logs INCLUDING DEFAULTS` and share the sequence.
CREATE SEQUENCE logs_id_seq AS bigint;
ALTER TABLE logs ADD COLUMN id bigint NOT NULL DEFAULT nextval('logs_id_seq');
ALTER SEQUENCE logs_id_seq OWNED BY logs.id;
CREATE INDEX logs_ts_id ON logs (ts DESC, id DESC);
