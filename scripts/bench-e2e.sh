#!/usr/bin/env bash
# One end-to-end benchmark run (BENCHMARKS.md has the runs and their figures).
#
#   scripts/bench-e2e.sh BINARY MODE [fleetsink bench args...]
#   scripts/bench-e2e.sh BINARY after-commit --robots 10000 --duration 60     # the fleet shape
#   scripts/bench-e2e.sh BINARY external --shape saturated --robots 50 --rate 60000
#
# MODE: after-commit | on-receipt (embedded broker) | external (a Mosquitto of its own).
# BENCH_GENERATOR=PATH: the load generator's binary (default BINARY), so that two daemon
# builds are compared under the same generator.
# INSTANCES=N (external mode): N daemons share the broker's traffic through
# mqtt.external.share_group; RSS and CPU are then the first's (its CPU per stored
# message divides by all instances' messages).
# RUNS=N (default 1): N bench runs against the same daemon and database, one after the
# other: the first on a fresh database ("cold"), the next ones on the data and caches
# the earlier runs left ("warm"), as BENCHMARKS.md's cold/warm figures were taken.
# STATEMENTS=1: after each run, PostgreSQL's ten costliest statements of that run
# (pg_stat_statements; needs it in the server's shared_preload_libraries).
# Needs BENCH_PG (a PostgreSQL server URL, e.g. postgres://postgres@127.0.0.1:55433/postgres);
# each run creates a fresh database on it, starts BINARY as the daemon (extra daemon
# settings via FLEETSINK__* in the environment), runs `BINARY bench` against it, prints
# the report and the bytes per stored metric value (heap + indexes of every metrics
# partition), and stops everything it started. Bounded by the bench's own --duration
# and --wait-timeout.
set -euo pipefail
BIN="$1"; MODE="$2"; shift 2
RUNS="${RUNS:-1}"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a whole number from 1 (is '$RUNS')" >&2; exit 2; }
MQTT_PORT=11884
HTTP_PORT=18080
. "$(dirname "$0")/bench-lib.sh"
bench_setup "$MODE" bench
INSTANCES="${INSTANCES:-1}"
[ "$INSTANCES" = 1 ] || [ "$MODE" = external ] || { echo "INSTANCES needs MODE=external" >&2; exit 2; }
daemon=""
for i in $(seq 1 "$INSTANCES"); do
  port=$((HTTP_PORT + i - 1))
  if [ "$INSTANCES" -gt 1 ]; then
    export FLEETSINK__MQTT__EXTERNAL__SHARE_GROUP=bench FLEETSINK__MQTT__EXTERNAL__CLIENT_ID="${DB_NAME}_$i"
  fi
  FLEETSINK__HTTP__LISTEN="127.0.0.1:$port" RUST_LOG=warn "$BIN" serve > "$WORK/daemon$i.log" 2>&1 &
  pids+=($!)
  daemon="${daemon:-$!}"
  bench_wait_ready "$port"
done
sleep 0.5
if [ "${STATEMENTS:-0}" = 1 ]; then
  psql "$DB" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
fi
for run in $(seq 1 "$RUNS"); do
  [ "$RUNS" = 1 ] || echo "== run $run of $RUNS ($([ "$run" = 1 ] && echo cold || echo warm))"
  # This database's statistics only (user 0 and query 0: all of theirs).
  [ "${STATEMENTS:-0}" != 1 ] || psql "$DB" -qAtc "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)" >/dev/null
  "${BENCH_GENERATOR:-$BIN}" bench --broker "mqtt://127.0.0.1:$MQTT_PORT" --database-url "$DB" --daemon-pid "$daemon" "$@"
  if [ "${STATEMENTS:-0}" = 1 ]; then
    echo "PostgreSQL's costliest statements of this run (total ms, calls, rows, statement):"
    psql "$DB" -qAt -F ' | ' -c "SELECT round(total_exec_time), calls, rows,
        left(regexp_replace(query, '\s+', ' ', 'g'), 100)
      FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      ORDER BY total_exec_time DESC LIMIT 10"
  fi
done
psql "$DB" -qAtc "VACUUM ANALYZE metrics" >/dev/null
# Metric values stored: one per row in the v1 shape, cardinality(vals) per row since v2.
if [ "$(psql "$DB" -qAtc "SELECT to_regclass('metric_sets') IS NOT NULL")" = t ]; then
  values="SELECT sum(cardinality(vals)) FROM metrics"
else
  values="SELECT count(*) FROM metrics"
fi
psql "$DB" -qAt <<SQL
SELECT format('stored: %s metric values, %s bytes per value (heap %s + indexes %s)',
              v.n, round((h.heap + h.idx)::numeric / v.n, 1), round(h.heap::numeric / v.n, 1),
              round(h.idx::numeric / v.n, 1))
FROM (SELECT sum(pg_table_size(c.oid)) AS heap, sum(pg_indexes_size(c.oid)) AS idx
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'metrics'::regclass) h,
     ($values) v(n);
SQL
