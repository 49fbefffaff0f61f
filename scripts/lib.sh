# Shared by scripts/run.sh and scripts/test.sh (sourced, not run): finding or installing
# PostgreSQL and Mosquitto, and running PostgreSQL as a non-root user.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# The newest installed PostgreSQL's bin directory, or nothing.
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

mosquitto_bin() { command -v mosquitto || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true; }

# apt-get installs the given Debian packages, without the packages they only recommend
# (Docker's engine with docker-compose, node-exporter with Prometheus, a mail server...)
# and without starting their services (PostgreSQL, Mosquitto, Prometheus): the tests
# start their own, on free ports.
apt_install() {
  echo "installing: $*"
  as_root apt-get update -qq
  local policy=/usr/sbin/policy-rc.d created=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# installed by fleetsink scripts/lib.sh while it installs packages\nexit 101\n' \
      | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    created=1
  fi
  local status=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || status=$?
  if [ -n "$created" ]; then as_root rm -f "$policy"; fi
  return "$status"
}

# PostgreSQL refuses to run as root: sets PG_USER and as_pg (run a command as PG_USER),
# using the 'postgres' account (created if missing) when we are root.
pg_user_setup() {
  if [ "$(id -u)" -eq 0 ]; then
    PG_USER=postgres
    id "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    # From /: the caller's directory may be one PG_USER cannot enter (root's home).
    as_pg() { (cd / && runuser -u "$PG_USER" -- "$@"); }
  else
    PG_USER="$(id -un)"
    as_pg() { "$@"; }
  fi
}
