#!/usr/bin/env bash
# The fleet pages while the fleet writes (BENCHMARKS.md, "Fourth session").
#
#   scripts/bench-pages.sh BINARY [ROBOTS]        # ROBOTS default 10000
#
# Needs BENCH_PG (a PostgreSQL server URL). A fresh database; BINARY as the daemon
# (embedded broker, after-commit; extra settings via FLEETSINK__* in the environment,
# e.g. FLEETSINK__HTTP__PAGE_MAX_STALE=0s to compute every request); one `fleetsink
# bench --shape fleet` run to fill it, then a second (`--per-second`) during whose 40 s
# window one client asks for robot-data/status and management/robots, each every
# POLL_EVERY seconds (default 0.5; TonyPi's UI: 5 per open page). Prints the second
# run's report and, per page, its first request (which may compute) and p50/p99/max of
# the rest. BENCH_BIN: another binary's `bench` (to compare daemons with one generator).
# Bounded by the bench's --duration; stops everything it started.
set -euo pipefail
BIN="$1"; ROBOTS="${2:-10000}"
MQTT_PORT=11884
HTTP_PORT=18080
API="http://127.0.0.1:$HTTP_PORT"
EVERY="${POLL_EVERY:-0.5}"
. "$(dirname "$0")/bench-lib.sh"
bench_setup after-commit pages
RUST_LOG=warn "$BIN" serve > "$WORK/daemon.log" 2>&1 &
daemon=$!
pids+=("$daemon")
bench_wait_ready "$HTTP_PORT"
run=(bench --shape fleet --robots "$ROBOTS" --duration 40 --warmup 10
     --broker "mqtt://127.0.0.1:$MQTT_PORT" --database-url "$DB" --daemon-pid "$daemon")
GEN="${BENCH_BIN:-$BIN}"
"$GEN" "${run[@]}" > "$WORK/fill.txt"

# One request to `path`, then EVERY seconds, for `secs` seconds: a latency (s) per line.
poll() {
  local path="$1" until=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$until" ]; do
    curl -s -o /dev/null -w '%{time_total}\n' "$API$path"
    sleep "$EVERY"
  done
}
# The window opens after the ramp (500 robots/s) and 10 s of warm-up.
start=$(( (ROBOTS + 499) / 500 + 11 ))
( sleep "$start"; poll /api/v1/robot-data/status 38 > "$WORK/status.s" ) &
pids+=($!)
( sleep "$start"; poll /api/v1/management/robots 38 > "$WORK/robots.s" ) &
pids+=($!)
"$GEN" "${run[@]}" --per-second
wait "${pids[@]:1}" 2>/dev/null || true
for page in status robots; do
  first="$(head -1 "$WORK/$page.s" | awk '{ printf "%.1f", $1 * 1000 }')"
  tail -n +2 "$WORK/$page.s" | sort -n | awk -v page="$page" -v first="${first:-none}" '
    { t[NR] = $1 * 1000 }
    END {
      if (NR == 0) { printf "%-8s first %s ms, no more answers\n", page, first; exit }
      i50 = int(NR * 0.50 + 0.5); if (i50 < 1) i50 = 1
      i99 = int(NR * 0.99 + 0.5); if (i99 < 1) i99 = 1
      printf "%-8s first %s ms, then %d requests: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
             page, first, NR, t[i50], t[i99], t[NR]
    }'
done
