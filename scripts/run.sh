#!/usr/bin/env bash
# fleetsink's one run command: builds and starts the daemon with the embedded broker.
# Uses $DATABASE_URL when set. Otherwise it installs PostgreSQL if missing and starts a
# local cluster of its own in ./.fleetsink-pg (kept between runs, so data persists) on
# 127.0.0.1:55432 (another with FLEETSINK_PG_PORT; a port already taken is named, with
# the way out), run as a non-root user. Extra arguments go to `fleetsink serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ -z "${DATABASE_URL:-}" ] && [ -z "${FLEETSINK__DATABASE__URL:-}" ]; then
  [ -n "$(pg_bin)" ] || apt_install postgresql
  PG_BIN="$(pg_bin)"
  pg_user_setup
  DATA="$PWD/.fleetsink-pg"
  PORT="${FLEETSINK_PG_PORT:-55432}"
  if as_pg "$PG_BIN/pg_ctl" -D "$DATA/data" status >/dev/null 2>&1; then
    # Already running (an earlier run): use the port it listens on.
    RUNNING="$(sed -n 4p "$DATA/data/postmaster.pid")"
    if [ -n "$RUNNING" ] && [ "$RUNNING" != "$PORT" ]; then
      echo "the local PostgreSQL in $DATA already runs on port $RUNNING; using it (not $PORT)"
      PORT="$RUNNING"
    fi
  else
    if port_in_use "$PORT"; then
      {
        echo "fleetsink: cannot start the local PostgreSQL: port $PORT on 127.0.0.1 is in use by another program."
        if command -v ss >/dev/null; then ss -ltnpH "sport = :$PORT" 2>/dev/null | sed 's/^/  /'; fi
        echo "Run it on another port:      FLEETSINK_PG_PORT=$((PORT + 1)) scripts/run.sh"
        echo "or use a database you have:  DATABASE_URL=postgres://user:password@host:5432/db scripts/run.sh"
      } >&2
      exit 1
    fi
    mkdir -p "$DATA"
    chown "$PG_USER" "$DATA"
    if [ ! -f "$DATA/data/PG_VERSION" ]; then
      as_pg "$PG_BIN/initdb" -D "$DATA/data" -A trust -U postgres -E UTF8 >/dev/null
    fi
    if ! as_pg "$PG_BIN/pg_ctl" -D "$DATA/data" -l "$DATA/postgres.log" -w \
        -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1" start >/dev/null 2>&1; then
      {
        echo "fleetsink: the local PostgreSQL did not start on 127.0.0.1:$PORT. The end of its log, $DATA/postgres.log:"
        tail -n 20 "$DATA/postgres.log" 2>/dev/null | sed 's/^/  /'
        echo "If the port is taken: FLEETSINK_PG_PORT=<another port> scripts/run.sh; or use your own database: DATABASE_URL=... scripts/run.sh"
      } >&2
      exit 1
    fi
    echo "started local PostgreSQL on 127.0.0.1:$PORT (data in $DATA; log $DATA/postgres.log; stop: $PG_BIN/pg_ctl -D $DATA/data stop)"
  fi
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
fi

# `cargo run` (which execs the daemon) rather than ./target/release/fleetsink, so a
# CARGO_TARGET_DIR elsewhere works too.
exec cargo run --release --quiet -- serve "$@"
