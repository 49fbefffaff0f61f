#!/usr/bin/env bash
# One end-to-end benchmark run (BENCHMARKS.md has the runs and their figures).
#
#   scripts/bench-e2e.sh BINARY MODE [fleetsink bench args...]
#
# MODE: after-commit | on-receipt (embedded broker) | external (a Mosquitto of its own).
# INSTANCES=N (external mode): N daemons share the broker's traffic through
# mqtt.external.share_group; RSS is then watched on the first.
# Needs BENCH_PG (a PostgreSQL server URL, e.g. postgres://postgres@127.0.0.1:55433/postgres);
# each run creates a fresh database on it, starts BINARY as the daemon (extra daemon
# settings via FLEETSINK__* in the environment), runs `BINARY bench` against it, prints
# the report and the bytes per stored metric value (heap + indexes of every metrics
# partition), and stops everything it started. Bounded by the bench's own --duration
# and --wait-timeout.
set -euo pipefail
BIN="$1"; MODE="$2"; shift 2
: "${BENCH_PG:?set BENCH_PG to a PostgreSQL server URL}"
DB_NAME="bench_$(date +%s%N)"
psql "$BENCH_PG" -qc "CREATE DATABASE $DB_NAME"
DB="${BENCH_PG%/*}/$DB_NAME"
WORK="$(mktemp -d)"
MQTT_PORT=11884
HTTP_PORT=18080
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

export FLEETSINK__DATABASE__URL="$DB" FLEETSINK__HTTP__LISTEN="127.0.0.1:$HTTP_PORT"
case "$MODE" in
  after-commit|on-receipt)
    export FLEETSINK__MQTT__EMBEDDED__LISTEN="127.0.0.1:$MQTT_PORT" FLEETSINK__MQTT__EMBEDDED__ACK="$MODE"
    ;;
  external)
    cat > "$WORK/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1000
max_queued_messages 0
max_queued_bytes 0
EOF
    mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
    "$mosquitto_bin" -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
    pids+=($!)
    export FLEETSINK__MQTT__MODE=external FLEETSINK__MQTT__EXTERNAL__URL="mqtt://127.0.0.1:$MQTT_PORT" \
      FLEETSINK__MQTT__EXTERNAL__BROKER_INFLIGHT=1000 FLEETSINK__MQTT__EXTERNAL__CLIENT_ID="$DB_NAME"
    ;;
  *) echo "MODE must be after-commit, on-receipt or external" >&2; exit 2 ;;
esac
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
  for _ in $(seq 1 100); do
    curl -sf "127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
sleep 0.5
"$BIN" bench --broker "mqtt://127.0.0.1:$MQTT_PORT" --database-url "$DB" --watch-pid "$daemon" "$@"
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
