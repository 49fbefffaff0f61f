#!/usr/bin/env bash
# The admin API benchmark on a day of fleet data (BENCHMARKS.md, "Admin API").
#
#   BENCH_PG=postgres://postgres@127.0.0.1:55433/postgres scripts/bench-api.sh BINARY
#
# Builds a fresh database on BENCH_PG holding a generated fleet day: 10,000 robots, 100
# of them with 20 metrics every 10 s for the last 24 h (864,000 rows, 17.3 M values, in
# the v2 shape, written by SQL as COPY would), their latest values, 50 jobs each, and
# 20,000 log rows. Starts BINARY as the daemon (MODE: after-commit, the default, or
# on-receipt with the embedded broker; external with a Mosquitto of its own) and times
# REQUESTS (default 200) sequential requests per route with curl over one keep-alive
# connection: first idle, then while `BINARY bench` publishes RATE (default 10000) msg/s
# from 100 robots for LOAD_SECS (default 30); the same load is run alone first, so
# ingestion throughput is recorded before and during the queries. Stops everything it
# started.
set -euo pipefail
BIN="$(realpath "$1")"
REQUESTS="${REQUESTS:-200}"
RATE="${RATE:-10000}"
LOAD_SECS="${LOAD_SECS:-30}"
MODE="${MODE:-after-commit}"
MQTT_PORT="${MQTT_PORT:-11886}"
HTTP_PORT="${HTTP_PORT:-18090}"
API="http://127.0.0.1:$HTTP_PORT"
. "$(dirname "$0")/bench-lib.sh"
bench_setup "$MODE" benchapi
"$BIN" migrate >/dev/null
"$BIN" partitions --maintain >/dev/null

echo "generating the fleet day..."
START=$(date +%s)
psql "$DB" -qv ON_ERROR_STOP=1 <<'SQL'
INSERT INTO robots (robot_id, status, last_seen, first_seen)
SELECT format('fleet_r%s', lpad(i::text, 5, '0')),
       CASE WHEN i < 100 THEN 'online' ELSE 'offline' END,
       now() - CASE WHEN i < 100 THEN interval '0' ELSE interval '2 days' END,
       now() - interval '30 days'
FROM generate_series(0, 9999) i;
INSERT INTO metric_names (name) SELECT format('m%s', lpad(i::text, 2, '0')) FROM generate_series(0, 19) i;
INSERT INTO metric_sets (name_ids) SELECT array_agg(id ORDER BY id) FROM metric_names;
-- One row per robot every 10 s for the 24 h ending now: 100 × 8,640.
INSERT INTO metrics (ts, robot, set_id, vals)
SELECT date_trunc('second', now()) - (k * interval '10 s'), r.id, (SELECT min(id) FROM metric_sets),
       ARRAY(SELECT 20 + 10 * sin(k / 100.0 + j) + r.id % 7 FROM generate_series(0, 19) j)
FROM robots r, generate_series(0, 8639) k
WHERE r.robot_id < 'fleet_r00100';
INSERT INTO metric_latest (robot, set_id, ts, vals)
SELECT DISTINCT ON (robot, set_id) robot, set_id, ts, vals FROM metrics ORDER BY robot, set_id, ts DESC;
INSERT INTO jobs (robot_id, task_name, status, start_time, end_time, items_done, items_total, percent_complete)
SELECT r.robot_id, 'pick', CASE WHEN j = 49 THEN 'active' ELSE 'completed' END,
       now() - (j * interval '20 min'), CASE WHEN j = 49 THEN NULL ELSE now() - (j * interval '20 min') + interval '15 min' END,
       10, 10, 100
FROM robots r, generate_series(0, 49) j WHERE r.robot_id < 'fleet_r00100';
INSERT INTO logs (robot_id, ts, level, category, message, dedup_key)
SELECT format('fleet_r%s', lpad((i % 100)::text, 5, '0')), now() - (i * interval '4 s'),
       (ARRAY['INFO', 'WARNING', 'ERROR'])[1 + i % 3], 'robot', 'generated log line ' || i, i
FROM generate_series(0, 19999) i;
VACUUM ANALYZE;
SQL
echo "generated in $(( $(date +%s) - START )) s: $(psql "$DB" -qAtc "SELECT count(*) FROM metrics") metric rows, \
$(psql "$DB" -qAtc "SELECT sum(cardinality(vals)) FROM metrics") values, \
$(psql "$DB" -qAtc "SELECT count(*) FROM robots") robots"

RUST_LOG=warn "$BIN" serve > "$WORK/daemon.log" 2>&1 &
daemon=$!
pids+=("$daemon")
bench_wait_ready "$HTTP_PORT"

FROM_TS="$(date -u -d '-24 hours' +%Y-%m-%dT%H:%M:00Z)"
TO_TS="$(date -u -d '+1 minute' +%Y-%m-%dT%H:%M:00Z)"
routes=(
  "metrics-day|/api/v1/robots/fleet_r00042/metrics?name=m07&from=$FROM_TS&to=$TO_TS&bucket=1m"
  "latest|/api/v1/robots/fleet_r00042/latest"
  "robot-data-latest|/api/v1/robot-data/latest/fleet_r00042"
  "robots-list|/api/v1/robots-db/robots"
  "stats|/api/v1/robots-db/stats"
  "robot-data-status|/api/v1/robot-data/status"
  "logs|/api/v1/robots-db/logs?limit=100&robot_id=fleet_r00042"
)

load() {
  "$BIN" bench --shape saturated --broker "mqtt://127.0.0.1:$MQTT_PORT" --database-url "$DB" \
    --robots 100 --rate "$RATE" --warmup 0 --duration "$LOAD_SECS" --wait-timeout 120
}

echo "== queries, no ingestion"
time_routes
echo "== ingestion alone ($RATE msg/s for $LOAD_SECS s)"
load
echo "== ingestion ($RATE msg/s) while the queries run"
load > "$WORK/load.txt" &
loader=$!
pids+=("$loader")
sleep 3
time_routes
wait "$loader"
cat "$WORK/load.txt"
