#!/usr/bin/env bash
# The reference for the external path (BENCHMARKS.md, "External against a reference"):
# the same load as `scripts/bench-e2e.sh BINARY external ...`, into the minimal sink of
# examples/reference_sink.rs instead of fleetsink.
#
#   scripts/bench-reference.sh BINARY --shape saturated --robots 50 --duration 10 --rate 80000
#
# Give a --rate: unbounded, the generator queues millions of messages in Mosquitto
# faster than any sink drains them, and the comparison becomes one of Mosquitto's queue.
# BINARY is a fleetsink binary (its `bench` is the load generator). Needs BENCH_PG like
# bench-e2e.sh; creates a fresh database, a Mosquitto of its own and the reference sink,
# prints the generator's report and the sink's committed msg/s, and stops everything.
set -euo pipefail
BIN="$1"; shift
MQTT_PORT=11885
HTTP_PORT=18085
. "$(dirname "$0")/bench-lib.sh"
bench_setup external reference
cargo build --release --example reference_sink -q
"$(dirname "$0")/../target/release/examples/reference_sink" "127.0.0.1:$MQTT_PORT" "$DB" 3 \
  > "$WORK/sink.out" 2>&1 &
sink=$!
pids+=("$sink")
sleep 1
"$BIN" bench --broker "mqtt://127.0.0.1:$MQTT_PORT" "$@"
wait "$sink" || true
cat "$WORK/sink.out"
