#!/usr/bin/env bash
# The Alerts page benchmark (BENCHMARKS.md, "Alerts page").
#
#   BENCH_PG=postgres://postgres@127.0.0.1:55433/postgres scripts/bench-alerts.sh BINARY
#
# Builds a fresh database on BENCH_PG holding ALERTS (default 100,000) alerts of 1,000
# robots created over the last SPREAD_HOURS (default 720 = 30 days; 24 puts every alert
# in the page's range, the worst case): two thirds threshold alerts, a third manual; the
# newest 4,000 threshold alerts (one per robot and type) and 1 in 75 alerts overall
# still open; two thirds acknowledged; each robot's six threshold rows and the
# fleet-wide ones. Starts BINARY (embedded broker) and times REQUESTS (default 200) sequential
# requests of each call the Alerts page makes every 10 s, with curl over one keep-alive
# connection; then the evaluation's per-batch threshold read for a batch of 100 robots
# (EXPLAIN ANALYZE, REQUESTS runs). Stops everything it started.
set -euo pipefail
BIN="$(realpath "$1")"
REQUESTS="${REQUESTS:-200}"
ALERTS="${ALERTS:-100000}"
SPREAD_HOURS="${SPREAD_HOURS:-720}"
MQTT_PORT="${MQTT_PORT:-11887}"
HTTP_PORT="${HTTP_PORT:-18091}"
API="http://127.0.0.1:$HTTP_PORT"
. "$(dirname "$0")/bench-lib.sh"
bench_setup after-commit benchalerts
"$BIN" migrate >/dev/null

echo "generating $ALERTS alerts over $SPREAD_HOURS h..."
psql "$DB" -qv ON_ERROR_STOP=1 -v n="$ALERTS" -v hours="$SPREAD_HOURS" <<'SQL'
INSERT INTO robots (robot_id, status) SELECT format('fleet_r%s', lpad(i::text, 4, '0')), 'online'
FROM generate_series(0, 999) i;
-- Open threshold alerts (source fleetsink) are unique per robot and type: the open
-- ones are i < 6000, one per (i % 1000, i / 1000).
INSERT INTO alerts (robot_id, alert_type, severity, title, message, source, value, threshold,
                    first_triggered, last_triggered, count, acknowledged, acknowledged_by,
                    acknowledged_at, resolved, resolved_at, last_reading_at, created_at)
SELECT format('fleet_r%s', lpad((i % 1000)::text, 4, '0')),
       (ARRAY['cpu', 'memory', 'temperature', 'battery', 'servo_temp', 'servo_voltage'])[1 + (i / 1000) % 6],
       CASE WHEN i % 5 = 0 THEN 'critical' WHEN i % 7 = 0 AND i % 3 = 0 THEN 'info' ELSE 'warning' END,
       'generated alert ' || i, 'value past its threshold', CASE WHEN i % 3 = 0 THEN 'operator' ELSE 'fleetsink' END,
       80 + i % 20, 70, t, t, 1 + i % 9,
       i % 3 <> 0, CASE WHEN i % 3 <> 0 THEN 'ops' END, CASE WHEN i % 3 <> 0 THEN t END,
       NOT open, CASE WHEN NOT open THEN t END, t, t
FROM (SELECT i, now() - (i::float8 / :n * :hours) * interval '1 hour' AS t,
             (i < 6000 AND i % 3 <> 0) OR (i % 3 = 0 AND i % 25 = 0) AS open
      FROM generate_series(0, :n - 1) i) g;
INSERT INTO alert_thresholds (robot_id, metric_type, warning_threshold, critical_threshold)
SELECT r, m, 60, 80 FROM (SELECT robot_id AS r FROM robots) rr,
       unnest(ARRAY['cpu', 'memory', 'temperature', 'servo_temp']) m;
INSERT INTO alert_thresholds (robot_id, metric_type, warning_threshold, critical_threshold)
SELECT r, m, 30, 10 FROM (SELECT robot_id AS r FROM robots) rr, unnest(ARRAY['battery', 'servo_voltage']) m;
INSERT INTO alert_thresholds (metric_type, warning_threshold, critical_threshold)
VALUES ('cpu', 70, 90), ('memory', 75, 90), ('temperature', 60, 75), ('battery', 30, 15),
       ('servo_temp', 50, 70), ('servo_voltage', 5.5, 5.0);
VACUUM ANALYZE;
SQL
echo "$(psql "$DB" -qAtc "SELECT count(*) FROM alerts") alerts," \
  "$(psql "$DB" -qAtc "SELECT count(*) FROM alerts WHERE created_at >= now() - interval '24 hours'") in the last 24 h," \
  "$(psql "$DB" -qAtc "SELECT count(*) FROM alerts WHERE NOT resolved") open," \
  "$(psql "$DB" -qAtc "SELECT count(*) FROM alert_thresholds") threshold rows"

RUST_LOG=warn "$BIN" serve > "$WORK/daemon.log" 2>&1 &
pids+=($!)
bench_wait_ready "$HTTP_PORT"

routes=(
  "alerts-open-24h|/api/v1/alerts?time_range=24h&resolved=false"
  "alerts-all-24h|/api/v1/alerts?time_range=24h"
  "alerts-critical-24h|/api/v1/alerts?severity=critical&time_range=24h&resolved=false"
  "stats-24h|/api/v1/alerts/stats?time_range=24h"
  "stats-robot-24h|/api/v1/alerts/stats?time_range=24h&robot_id=fleet_r0042"
  "alerts-open-30d|/api/v1/alerts?time_range=30d&resolved=false"
  "stats-30d|/api/v1/alerts/stats?time_range=30d"
)
echo "== the Alerts page's calls"
time_routes

echo "== the evaluation's threshold read, a batch of 100 robots ($REQUESTS runs)"
robots="{$(seq -f 'fleet_r%04g' 0 99 | paste -sd, -),\"\"}"
for _ in $(seq 1 "$REQUESTS"); do
  psql "$DB" -qAtc "EXPLAIN (ANALYZE, FORMAT JSON) SELECT robot_id, metric_type, warning_threshold, \
    critical_threshold, enabled FROM alert_thresholds WHERE coalesce(robot_id, '') = ANY('$robots')" \
    | grep -o '"Execution Time": [0-9.]*' | awk '{print $3}'
done | sort -n | awk '{ t[NR] = $1 } END { printf "threshold-read        %5d runs      p50 %7.3f ms  p99 %7.3f ms  (server time)\n", NR, t[int(NR * 0.5 + 0.5)], t[int(NR * 0.99 + 0.5)] }'
