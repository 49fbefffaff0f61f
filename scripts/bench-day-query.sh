#!/usr/bin/env bash
# The per-robot metric day query while a fleet writes (BENCHMARKS.md, "Minute rollups").
#
#   BENCH_PG=postgres://postgres@127.0.0.1:55433/postgres scripts/bench-day-query.sh BINARY
#
# Builds a fresh database on BENCH_PG holding READ_ROBOTS (default 10) robots with a day
# of readings at TonyPi's sensor cadence (one row of 12 values every 2 s for the 24 h
# ending now: 43,200 rows per robot, their rows interleaved as a fleet writes them) and,
# unless ROLLUPS=0, their minute rollups as the daemon writes them (computed here by
# SQL, the minutes sealed). Starts BINARY as the daemon (embedded broker, after-commit;
# ROLLUPS=0 also turns sink.minute_rollups off), times REQUESTS (default 200) day
# queries (`/api/v1/robots/{id}/metrics?name=s03&from=<24 h ago>&to=<now>&bucket=1m`,
# robots in turn, sequential, PAUSE_MS (100) apart) idle, then while `BINARY bench
# --shape fleet` runs ROBOTS (default 10000) robot connections at TonyPi's cadence for
# LOAD_SECS (default 60) after a 10 s warm-up, and prints the fleet run's report. Stops
# everything it started.
set -euo pipefail
BIN="$(realpath "$1")"
READ_ROBOTS="${READ_ROBOTS:-10}"
REQUESTS="${REQUESTS:-200}"
PAUSE_MS="${PAUSE_MS:-100}"
ROBOTS="${ROBOTS:-10000}"
LOAD_SECS="${LOAD_SECS:-60}"
ROLLUPS="${ROLLUPS:-1}"
MQTT_PORT="${MQTT_PORT:-11887}"
HTTP_PORT="${HTTP_PORT:-18091}"
API="http://127.0.0.1:$HTTP_PORT"
. "$(dirname "$0")/bench-lib.sh"
bench_setup after-commit benchday
"$BIN" migrate >/dev/null
"$BIN" partitions --maintain >/dev/null

echo "generating $READ_ROBOTS robots' day (rollups: $ROLLUPS)..."
START=$(date +%s)
psql "$DB" -qv ON_ERROR_STOP=1 -v read_robots="$READ_ROBOTS" <<'SQL'
INSERT INTO robots (robot_id, status, last_seen, first_seen)
SELECT format('day_r%s', lpad(i::text, 3, '0')), 'online', now(), now() - interval '30 days'
FROM generate_series(0, :read_robots - 1) i;
INSERT INTO metric_names (name) SELECT format('s%s', lpad(i::text, 2, '0')) FROM generate_series(0, 11) i;
INSERT INTO metric_sets (name_ids) SELECT array_agg(id ORDER BY id) FROM metric_names;
-- Every 2 s for the 24 h ending now, all robots' rows of a moment together.
INSERT INTO metrics (ts, robot, set_id, vals)
SELECT date_trunc('second', now()) - (k * interval '2 s'), r.id, (SELECT min(id) FROM metric_sets),
       ARRAY(SELECT 40 + 10 * sin(k / 300.0 + j) + (k * 7919 + r.id * 31 + j) % 11 FROM generate_series(0, 11) j)
FROM generate_series(43199, 0, -1) k, robots r
ORDER BY k DESC, r.id;
SQL
if [ "$ROLLUPS" != 0 ]; then
  # What each worker writes for a minute: per robot and minute one row, per metric set
  # the count, the newest time, and the minimums, maximums, sums and newest values of the
  # set's names (here one set per robot). The current minute is left unsealed (read from
  # the rows, as the daemon's would be).
  psql "$DB" -qv ON_ERROR_STOP=1 <<'SQL'
WITH v AS (
  SELECT m.robot, m.set_id, date_trunc('minute', m.ts) AS minute, u.ord,
         min(u.v) AS lo, max(u.v) AS hi, sum(u.v) AS total,
         (array_agg(u.v ORDER BY m.ts DESC))[1] AS newest, count(*) AS n, max(m.ts) AS last_ts
  FROM metrics m CROSS JOIN LATERAL unnest(m.vals) WITH ORDINALITY AS u(v, ord)
  GROUP BY 1, 2, 3, 4)
INSERT INTO metric_rollups (minute, robot, set_ids, ns, last_ts, offs, vals)
SELECT minute, robot, ARRAY[set_id], ARRAY[max(n)::int4], ARRAY[max(last_ts)], ARRAY[0],
       array_agg(lo ORDER BY ord) || array_agg(hi ORDER BY ord)
         || array_agg(total ORDER BY ord) || array_agg(newest ORDER BY ord)
FROM v GROUP BY minute, robot, set_id;
INSERT INTO metric_rollup_marks (minute, run, worker, sealed)
SELECT DISTINCT minute, 0, 0, true FROM metric_rollups WHERE minute < date_trunc('minute', now());
SQL
else
  export FLEETSINK__SINK__MINUTE_ROLLUPS=false
fi
psql "$DB" -qc "VACUUM ANALYZE"
echo "generated in $(( $(date +%s) - START )) s: $(psql "$DB" -qAtc "SELECT count(*) FROM metrics") metric rows, \
$(psql "$DB" -qAtc "SELECT count(*) FROM metric_rollups") rollup rows"

RUST_LOG=warn "$BIN" serve > "$WORK/daemon.log" 2>&1 &
daemon=$!
pids+=("$daemon")
bench_wait_ready "$HTTP_PORT"

# Prints "label requests p50 p99 max (ms)" for REQUESTS day queries, robots in turn.
time_day_queries() {
  local from to i
  from="$(date -u -d '-24 hours' +%Y-%m-%dT%H:%M:%SZ)"
  to="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for i in $(seq 0 $((REQUESTS - 1))); do
    robot="day_r$(printf %03d $((i % READ_ROBOTS)))"
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
      "$API/api/v1/robots/$robot/metrics?name=s03&from=$from&to=$to&bucket=1m"
    sleep "$(awk -v ms="$PAUSE_MS" 'BEGIN { print ms / 1000 }')"
  done > "$WORK/times.txt"
  sort -k2 -n "$WORK/times.txt" | awk -v label="$1" '
    $1 != 200 { bad++ } { t[NR] = $2 * 1000 }
    END { p50 = t[int(NR * 0.50 + 0.5)]; p99 = t[int(NR * 0.99 + 0.5)];
          printf "%-24s %5d requests (%d not 200)  p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", label, NR, bad, p50, p99, t[NR] }'
}

echo "== day queries, no ingestion"
time_day_queries idle
echo "== day queries while $ROBOTS robots write at TonyPi's cadence"
"$BIN" bench --shape fleet --robots "$ROBOTS" --duration "$LOAD_SECS" --warmup 10 \
  --broker "mqtt://127.0.0.1:$MQTT_PORT" --database-url "$DB" --daemon-pid "$daemon" \
  > "$WORK/load.txt" 2>&1 &
loader=$!
pids+=("$loader")
# Past the generator's connecting and warm-up.
sleep "${READ_AFTER:-25}"
time_day_queries "during $ROBOTS robots"
wait "$loader" || true
cat "$WORK/load.txt"
