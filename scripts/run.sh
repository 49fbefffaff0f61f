#!/usr/bin/env bash
# fleetsink's one run command: builds and starts the daemon with the embedded broker.
# Uses $DATABASE_URL when set. Otherwise it installs PostgreSQL if missing and starts a
# local cluster of its own in ./.fleetsink-pg (kept between runs, so data persists) on
# 127.0.0.1:55432, run as a non-root user. Extra arguments go to `fleetsink serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if [ -z "${DATABASE_URL:-}" ] && [ -z "${FLEETSINK__DATABASE__URL:-}" ]; then
  [ -n "$(pg_bin)" ] || apt_install postgresql
  PG_BIN="$(pg_bin)"
  pg_user_setup
  DATA="$PWD/.fleetsink-pg"
  PORT="${FLEETSINK_PG_PORT:-55432}"
  mkdir -p "$DATA"
  chown "$PG_USER" "$DATA"
  if [ ! -f "$DATA/data/PG_VERSION" ]; then
    as_pg "$PG_BIN/initdb" -D "$DATA/data" -A trust -U postgres -E UTF8 >/dev/null
  fi
  if ! as_pg "$PG_BIN/pg_ctl" -D "$DATA/data" status >/dev/null 2>&1; then
    as_pg "$PG_BIN/pg_ctl" -D "$DATA/data" -l "$DATA/postgres.log" -w \
      -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1" start >/dev/null
    echo "started local PostgreSQL on 127.0.0.1:$PORT (data in $DATA; stop: $PG_BIN/pg_ctl -D $DATA/data stop)"
  fi
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
fi

cargo build --release --quiet
exec ./target/release/fleetsink serve "$@"
