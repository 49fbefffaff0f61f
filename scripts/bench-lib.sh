# Shared by the benchmark scripts (sourced, not run). Needs BENCH_PG, MQTT_PORT and
# HTTP_PORT set. bench_setup raises the open-files limit, creates a fresh database (DB,
# DB_NAME), a work directory (WORK), the daemon's environment for MODE (after-commit |
# on-receipt: the embedded broker; external: a Mosquitto of its own, started here) and a
# trap that stops everything in `pids`, removes WORK and drops the database (KEEP_DB=1
# keeps it). time_routes times a list of
# routes. BENCH_INFLIGHT (default 1000): Mosquitto's max_inflight_messages in external
# mode, the messages a subscriber may hold unacknowledged.
bench_setup() {
  local mode="$1" prefix="$2"
  : "${BENCH_PG:?set BENCH_PG to a PostgreSQL server URL}"
  # One descriptor per robot connection on each side: the daemon started here inherits
  # the soft limit, raised to the hard one (`fleetsink bench` raises its own).
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  DB_NAME="${prefix}_$(date +%s%N)"
  psql "$BENCH_PG" -qc "CREATE DATABASE $DB_NAME"
  DB="${BENCH_PG%/*}/$DB_NAME"
  WORK="$(mktemp -d)"
  pids=()
  trap bench_cleanup EXIT
  export FLEETSINK__DATABASE__URL="$DB" FLEETSINK__HTTP__LISTEN="127.0.0.1:$HTTP_PORT"
  case "$mode" in
    after-commit|on-receipt)
      export FLEETSINK__MQTT__EMBEDDED__LISTEN="127.0.0.1:$MQTT_PORT" FLEETSINK__MQTT__EMBEDDED__ACK="$mode"
      ;;
    external)
      cat > "$WORK/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages ${BENCH_INFLIGHT:-1000}
max_queued_messages 0
max_queued_bytes 0
EOF
      "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
      pids+=($!)
      export FLEETSINK__MQTT__MODE=external FLEETSINK__MQTT__EXTERNAL__URL="mqtt://127.0.0.1:$MQTT_PORT" \
        FLEETSINK__MQTT__EXTERNAL__BROKER_INFLIGHT="${BENCH_INFLIGHT:-1000}" FLEETSINK__MQTT__EXTERNAL__CLIENT_ID="$DB_NAME"
      ;;
    *) echo "MODE must be after-commit, on-receipt or external" >&2; exit 2 ;;
  esac
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
  # A database left behind is autovacuumed later and slows the next runs on the same
  # server; KEEP_DB=1 keeps it for inspection.
  if [ "${KEEP_DB:-0}" != 1 ] && [ -n "${DB_NAME:-}" ]; then
    for d in "$DB_NAME" "${DB_NAME}_ingest"; do
      psql "$BENCH_PG" -qc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true
    done
  fi
}

# Waits up to 10 s for the daemon on `port` to be ready.
bench_wait_ready() {
  for _ in $(seq 1 100); do
    curl -sf "127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the daemon on port $1 did not become ready" >&2
  exit 1
}

# Prints "name requests p50 p99 max (ms)" for each route of `routes` ("name|path"),
# REQUESTS sequential requests each to API over one keep-alive connection.
time_routes() {
  for r in "${routes[@]}"; do
    name="${r%%|*}"; path="${r#*|}"
    code="$(curl -s -o /dev/null -w '%{http_code}' "$API$path")"
    [ "$code" = 200 ] || { echo "$name answered $code" >&2; exit 1; }
    urls=()
    for _ in $(seq 1 "$REQUESTS"); do urls+=(-o /dev/null "$API$path"); done
    curl -s -w '%{time_total}\n' "${urls[@]}" | sort -n | awk -v name="$name" '
      { t[NR] = $1 * 1000 }
      END { p50 = t[int(NR * 0.50 + 0.5)]; p99 = t[int(NR * 0.99 + 0.5)];
            printf "%-20s %5d requests  p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", name, NR, p50, p99, t[NR] }'
  done
}
