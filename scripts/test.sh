#!/usr/bin/env bash
# fleetsink's one test command. On a fresh Debian/Ubuntu machine with Rust it installs
# what is missing (PostgreSQL, Mosquitto), starts a throwaway PostgreSQL cluster (initdb
# into a temp dir, trust auth, a free loopback port, run as a non-root user), runs every
# test against it, and stops and removes the cluster however the run ends. Tests start
# their own Mosquitto processes and databases on free ports, so runs can overlap.
# Extra arguments go to the test runner (cargo nextest run, or cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

missing=()
[ -n "$(pg_bin)" ] || missing+=(postgresql)
[ -n "$(mosquitto_bin)" ] || missing+=(mosquitto)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v promtool >/dev/null || missing+=(prometheus)   # promtool, for the /metrics test
command -v docker-compose >/dev/null || missing+=(docker-compose)   # validates docker-compose.yml
[ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
# cargo-deb, for the Debian package test.
cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked --quiet
# schemathesis (PyPI), for the API fuzzing test: a virtualenv cached across runs.
ST_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/fleetsink-test/venv"
if [ ! -x "$ST_VENV/bin/schemathesis" ]; then
  echo "installing schemathesis into $ST_VENV"
  # Debian's python3 has the venv module but not ensurepip, which creating one needs.
  python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv
  python3 -m venv "$ST_VENV"
  # Pinned: the test reads its checks' names and report, which change across majors.
  "$ST_VENV/bin/pip" install --quiet 'schemathesis==4.32.5'
fi
export FLEETSINK_TEST_SCHEMATHESIS="$ST_VENV/bin/schemathesis"
PG_BIN="$(pg_bin)"
MOSQUITTO_BIN="$(mosquitto_bin)"
pg_user_setup

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport'
}

WORK="$(mktemp -d -t fleetsink-test.XXXXXX)"
chmod 755 "$WORK"
chown "$PG_USER" "$WORK"
PORT="$(free_port)"
cleanup() {
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

as_pg "$PG_BIN/initdb" -D "$WORK/data" -A trust -U postgres --no-sync -E UTF8 >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w -o \
  "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
  start >/dev/null

export FLEETSINK_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
export FLEETSINK_TEST_PG_BIN="$PG_BIN"
export FLEETSINK_TEST_PG_USER="$PG_USER"
export FLEETSINK_TEST_MOSQUITTO="$MOSQUITTO_BIN"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
