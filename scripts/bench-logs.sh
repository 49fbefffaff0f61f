#!/usr/bin/env bash
# The Logs page benchmark (BENCHMARKS.md, "Logs page"): the TonyPi UI's log queries
# over HTTP on generated fleet logs, and what the logs indexes cost the insert path.
#
#   BENCH_PG=postgres://postgres@127.0.0.1:55433/postgres scripts/bench-logs.sh BINARY
#
# Builds a fresh database on BENCH_PG holding DAYS (default 3) days of logs ending now,
# ROWS_PER_DAY (default 1,000,000) a day from ROBOTS (default 1000) robots, written by
# SQL (generate_series) in the shape the pipeline writes: 85 % INFO, 10 % WARNING, 4 %
# ERROR, 1 % CRITICAL, fifteen message templates (robots' lines, lifecycle rows,
# command answers), the error words correlated with the error levels as in real logs.
# Starts BINARY as the daemon and times REQUESTS (default 200) sequential requests per
# route with curl over one keep-alive connection, then the search routes interleaved
# (one prepared statement seeing every pattern, as in real use). Then, in a second
# fresh database, times BATCHES (default 400) insert transactions of 500 log rows each
# (the sink's batch shape) with the migrated indexes and with the indexes as they were
# before the search index (logs_ts back, logs_message_trgm gone). Stops everything it
# started and drops nothing (the databases stay for inspection).
set -euo pipefail
BIN="$(realpath "$1")"
DAYS="${DAYS:-3}"
ROWS_PER_DAY="${ROWS_PER_DAY:-1000000}"
ROBOTS="${ROBOTS:-1000}"
REQUESTS="${REQUESTS:-200}"
BATCHES="${BATCHES:-400}"
MQTT_PORT="${MQTT_PORT:-11887}"
HTTP_PORT="${HTTP_PORT:-18091}"
API="http://127.0.0.1:$HTTP_PORT"
. "$(dirname "$0")/bench-lib.sh"
bench_setup after-commit benchlogs
"$BIN" migrate >/dev/null

# bench_log_rows(g0, g1): rows g0..g1, row g at now() - g day/ROWS_PER_DAY.
generator() {
  cat <<SQL
CREATE OR REPLACE FUNCTION bench_log_rows(g0 bigint, g1 bigint, per_day bigint, robots int)
RETURNS TABLE (robot_id text, ts timestamptz, level text, category text, source text,
               message text, details jsonb, dedup_key bigint)
LANGUAGE sql AS \$\$
SELECT 'tonypi_' || lpad((g % robots)::text, 4, '0'),
       now() - g * (interval '1 day' / per_day),
       (ARRAY['INFO', 'WARNING', 'ERROR', 'CRITICAL'])[CASE WHEN t < 6 THEN 1 WHEN t < 9 THEN 2 WHEN t < 13 THEN 3 ELSE 4 END],
       CASE WHEN t IN (1, 8) THEN 'robot' WHEN t IN (2, 11, 12) THEN 'command'
            WHEN t = 3 THEN 'scan' WHEN t = 4 THEN 'vision' ELSE 'robot_main' END,
       CASE WHEN t IN (1, 8) THEN 'fleetsink' ELSE 'main' END,
       CASE t
         WHEN 0 THEN 'Robot running normally. Cycle: ' || g
         WHEN 1 THEN 'status changed from offline to online'
         WHEN 2 THEN 'move succeeded'
         WHEN 3 THEN 'scanned QR' || (g % 500) || ' at station ' || (g % 7)
         WHEN 4 THEN 'detected ball (confidence 0.' || (g % 90 + 10) || ')'
         WHEN 5 THEN 'Battery at ' || (g % 60 + 40) || '%'
         WHEN 6 THEN 'Battery low: ' || (g % 20) || '%'
         WHEN 7 THEN 'Servo ' || (g % 16) || ' temperature ' || (70 + g % 10) || ' C above warning'
         WHEN 8 THEN 'status changed from online to offline: no message for 120 s'
         WHEN 9 THEN 'Servo ' || (g % 16) || ' timeout'
         WHEN 10 THEN 'Camera timeout, retrying'
         WHEN 11 THEN 'Command move failed: servo busy'
         WHEN 12 THEN 'head failed'
         WHEN 13 THEN 'Servo ' || (g % 16) || ' overheated'
         ELSE 'EMERGENCY STOP: obstacle'
       END,
       CASE WHEN t IN (0, 5, 7) THEN jsonb_build_object('cycle', g % 1000) END,
       g
FROM generate_series(g0, g1) g,
     -- 85 % INFO (templates 0-5), 10 % WARNING (6-8), 4 % ERROR (9-12), 1 % CRITICAL (13-14)
     LATERAL (SELECT (g * 7919) % 1000 AS b) h,
     LATERAL (SELECT CASE WHEN b < 850 THEN b % 6 WHEN b < 950 THEN 6 + b % 3
                          WHEN b < 990 THEN 9 + b % 4 ELSE 13 + b % 2 END AS t) tt
\$\$;
SQL
}

# Day partitions (fleetsink's names) from DAYS days back to today.
partitions_sql="SELECT format('CREATE TABLE IF NOT EXISTS logs_p%s PARTITION OF logs FOR VALUES FROM (%L) TO (%L)',
  to_char(d, 'YYYYMMDD'), d, d + 1)
FROM generate_series(0, $DAYS) k, LATERAL (SELECT (now() AT TIME ZONE 'utc')::date - k AS d) x \\gexec"

echo "generating $DAYS days x $ROWS_PER_DAY log rows from $ROBOTS robots..."
generator | psql "$DB" -qv ON_ERROR_STOP=1
echo "$partitions_sql" | psql "$DB" -qv ON_ERROR_STOP=1
for day in $(seq 0 $((DAYS - 1))); do
  start=$(date +%s.%N)
  psql "$DB" -qv ON_ERROR_STOP=1 -c "INSERT INTO logs (robot_id, ts, level, category, source, message, details, dedup_key)
    SELECT * FROM bench_log_rows($((day * ROWS_PER_DAY)), $(((day + 1) * ROWS_PER_DAY - 1)), $ROWS_PER_DAY, $ROBOTS)"
  echo "  day $day: $ROWS_PER_DAY rows in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
done
psql "$DB" -qc "VACUUM ANALYZE logs"
echo "$(psql "$DB" -qAtc "SELECT count(*) FROM logs") rows; 24 h partition: \
$(psql "$DB" -qAtc "SELECT pg_size_pretty(pg_relation_size(c.oid)) || ' heap, ' ||
  pg_size_pretty(pg_indexes_size(c.oid)) || ' indexes (trigram ' ||
  coalesce(pg_size_pretty((SELECT pg_relation_size(i.indexrelid) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    WHERE i.indrelid = c.oid AND ic.relname LIKE '%message%')), 'none') || ')'
  FROM pg_class c WHERE c.relname = 'logs_p' || to_char((now() AT TIME ZONE 'utc')::date - 1, 'YYYYMMDD')")"

RUST_LOG=warn "$BIN" serve > "$WORK/daemon.log" 2>&1 &
pids+=($!)
bench_wait_ready "$HTTP_PORT"

search_routes=(
  "error+timeout|/api/v1/logs?level=ERROR&search=timeout&time_range=24h"
  "error+overheated|/api/v1/logs?level=ERROR&search=overheated&time_range=24h"
  "warning+battery|/api/v1/logs?level=WARNING&search=battery&time_range=24h"
  "critical+obstacle|/api/v1/logs?level=CRITICAL&search=obstacle&time_range=24h"
  "info+QR123|/api/v1/logs?level=INFO&search=QR123%20at&time_range=24h"
  "error+nomatch|/api/v1/logs?level=ERROR&search=zqxj&time_range=24h"
  "search QR123|/api/v1/logs?search=QR123%20at&time_range=24h"
  "search nomatch|/api/v1/logs?search=zqxj&time_range=24h"
)
other_routes=(
  "page default|/api/v1/logs?time_range=24h"
  "level ERROR|/api/v1/logs?level=ERROR&time_range=24h"
  "errors view|/api/v1/logs/errors?time_range=24h&limit=50"
  "commands view|/api/v1/logs/commands?time_range=24h&limit=50"
  "stats 24h|/api/v1/logs/stats?time_range=24h"
)

# Reads curl's time_total lines; prints "name count p50 p99 max (ms)".
percentiles() {
  sort -n | awk -v name="$1" '
    { t[NR] = $1 * 1000 }
    END { p50 = t[int(NR * 0.50 + 0.5)]; p99 = t[int(NR * 0.99 + 0.5)];
          printf "%-18s %5d requests  p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", name, NR, p50, p99, t[NR] }'
}

time_routes() {
  for r in "$@"; do
    name="${r%%|*}"; path="${r#*|}"
    code="$(curl -s -o /dev/null -w '%{http_code}' "$API$path")"
    [ "$code" = 200 ] || { echo "$name answered $code" >&2; exit 1; }
    urls=()
    for _ in $(seq 1 "$REQUESTS"); do urls+=(-o /dev/null "$API$path"); done
    curl -s -w '%{time_total}\n' "${urls[@]}" | percentiles "$name"
  done
}

echo "== the Logs page's queries, one route at a time"
time_routes "${search_routes[@]}" "${other_routes[@]}"
echo "== the search routes interleaved"
urls=()
for _ in $(seq 1 $((REQUESTS / ${#search_routes[@]} + 1))); do
  for r in "${search_routes[@]}"; do urls+=(-o /dev/null "$API${r#*|}"); done
done
curl -s -w '%{time_total}\n' "${urls[@]}" | percentiles "all searches"

echo "== insert cost: $BATCHES transactions of 500 log rows (the sink's batch shape)"
INGEST_DB="${DB}_ingest"
psql "$BENCH_PG" -qc "CREATE DATABASE ${DB_NAME}_ingest"
FLEETSINK__DATABASE__URL="$INGEST_DB" "$BIN" migrate >/dev/null
generator | psql "$INGEST_DB" -qv ON_ERROR_STOP=1
echo "$partitions_sql" | psql "$INGEST_DB" -qv ON_ERROR_STOP=1
psql "$INGEST_DB" -qv ON_ERROR_STOP=1 <<SQL
CREATE TABLE bench_batch (n bigserial, variant text, batch int, ms float8);
CREATE PROCEDURE bench_ingest(variant text, batches int) LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz;
BEGIN
  FOR i IN 0..batches - 1 LOOP
    t0 := clock_timestamp();
    INSERT INTO logs (robot_id, ts, level, category, source, message, details, dedup_key)
    SELECT * FROM bench_log_rows(i * 500, i * 500 + 499, 86400 * 100, $ROBOTS);
    COMMIT;
    INSERT INTO bench_batch (variant, batch, ms) VALUES (variant, i, extract(epoch FROM clock_timestamp() - t0) * 1000);
  END LOOP;
END \$\$;
SQL
ingest() {
  psql "$INGEST_DB" -qv ON_ERROR_STOP=1 -c "TRUNCATE logs" -c "CHECKPOINT" -c "CALL bench_ingest('$1', $BATCHES)"
}
ingest "migrated (trigram, no logs_ts)"
psql "$INGEST_DB" -qc "DROP INDEX logs_message_trgm" -c "CREATE INDEX logs_ts ON logs (ts DESC)"
ingest "before (logs_ts, no trigram)"
psql "$INGEST_DB" -qc "CREATE INDEX logs_message_trgm ON logs USING gin (message gin_trgm_ops)"
ingest "trigram and logs_ts"
psql "$INGEST_DB" -qAt -c "
  SELECT rpad(variant, 32) || lpad(round(count(*) * 500 / (sum(ms) / 1000))::text, 7) || ' rows/s'
         || '  batch p50 ' || lpad(round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1)::text, 6)
         || ' ms  p99 ' || lpad(round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1)::text, 6)
         || ' ms  max ' || lpad(round(max(ms)::numeric, 1)::text, 6) || ' ms'
  FROM bench_batch GROUP BY variant ORDER BY min(n)"
