#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the annotation-store tests.
#
# Usage (CI):   eval "$(bash .ci/postgres.sh)"
#               pytest tests/test_annotations.py
#
# Idempotent: installs the Debian `postgresql` package only when no server
# binaries are found, initialises a private cluster only once, starts it only
# when it is not running, and creates the role/database only when missing.
# The server listens on 127.0.0.1 only (plus a unix socket inside the data
# directory).  Everything except the final `export ...` lines goes to stderr,
# so stdout can be eval'ed.
#
# Settings (environment):
#   ANNOT_PG_DIR   cluster directory          (default /tmp/annotations-pg)
#   ANNOT_PG_PORT  TCP port on 127.0.0.1       (default 54329)
#   ANNOT_PG_USER  role to create              (default annotations)
#   ANNOT_PG_PASS  its password                (default annotations)
#   ANNOT_PG_DB    database to create          (default annotations_test)
#   ANNOT_PG_STOP=1  stop the server and exit (no output on stdout)
# Output: ANNOTATIONS_TEST_PG_URL, and ANNOT_PG_STARTED=1 when this call started the server
# (0 when it was already running: someone else's, leave it).
set -euo pipefail

PGDIR="${ANNOT_PG_DIR:-/tmp/annotations-pg}"
PORT="${ANNOT_PG_PORT:-54329}"
DBUSER="${ANNOT_PG_USER:-annotations}"
DBPASS="${ANNOT_PG_PASS:-annotations}"
DBNAME="${ANNOT_PG_DB:-annotations_test}"
DATA="$PGDIR/data"
SOCK="$PGDIR/sock"
LOG="$PGDIR/server.log"

log() { echo "[postgres.sh] $*" >&2; }

for name in DBUSER DBNAME; do
    if [[ ! "${!name}" =~ ^[a-z_][a-z0-9_]*$ ]]; then
        log "invalid $name '${!name}' (use [a-z_][a-z0-9_]*)"; exit 2
    fi
done
if [[ "$DBPASS" == *"'"* || "$DBPASS" == *"@"* || "$DBPASS" == *":"* || "$DBPASS" == *"/"* ]]; then
    log "ANNOT_PG_PASS must not contain ' @ : /"; exit 2
fi

find_bindir() {
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return 0; fi
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"; return 0
    fi
    return 1
}

SUDO=""
if [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

BINDIR="$(find_bindir || true)"
if [[ -z "$BINDIR" ]]; then
    log "PostgreSQL server binaries not found; installing Debian package 'postgresql'"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update >&2
    $SUDO apt-get install -y postgresql >&2
    BINDIR="$(find_bindir)" || { log "postgresql installed but initdb/pg_ctl not found"; exit 1; }
fi
log "using server binaries in $BINDIR"

# The server refuses to run as root: run it as the 'postgres' system user
# (created by the Debian package) when we are root, else as ourselves.
if [[ "$(id -u)" == 0 ]]; then
    RUNAS_USER="postgres"
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$PGDIR" --shell /bin/sh postgres
    if command -v runuser >/dev/null 2>&1; then
        as_pg() { runuser -u postgres -- "$@"; }
    else
        as_pg() { su -s /bin/sh postgres -c "$(printf '%q ' "$@")"; }
    fi
else
    RUNAS_USER="$(id -un)"
    as_pg() { "$@"; }
fi

pg_running() { as_pg "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

if [[ "${ANNOT_PG_STOP:-0}" == 1 ]]; then
    if [[ -d "$DATA" ]] && pg_running; then as_pg "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >&2; fi
    log "stopped"; exit 0
fi

mkdir -p "$PGDIR" "$SOCK"
[[ "$(id -u)" == 0 ]] && chown "$RUNAS_USER" "$PGDIR" "$SOCK"
chmod 700 "$PGDIR"

if [[ ! -s "$DATA/PG_VERSION" ]]; then
    log "initialising cluster in $DATA"
    rm -rf "$DATA"
    init() { as_pg "$BINDIR/initdb" -D "$DATA" -U postgres --auth-local=trust \
                 --auth-host=scram-sha-256 -E UTF8 "$@" >&2; }
    init --locale=C.UTF-8 || { rm -rf "$DATA"; init --no-locale; }
fi

STARTED=0
if pg_running; then
    log "server already running"
else
    STARTED=1
    log "starting server on 127.0.0.1:$PORT (log: $LOG)"
    as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK -c fsync=on" start >&2 \
      || { log "server failed to start; last log lines:"; tail -n 30 "$LOG" >&2 || true; exit 1; }
fi

psql_su() { as_pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres "$@"; }

for _ in $(seq 1 30); do
    if as_pg "$BINDIR/pg_isready" -q -h "$SOCK" -p "$PORT"; then break; fi
    sleep 1
done

psql_su >&2 <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DBUSER') THEN
    CREATE ROLE $DBUSER LOGIN PASSWORD '$DBPASS';
  ELSE
    ALTER ROLE $DBUSER LOGIN PASSWORD '$DBPASS';
  END IF;
END
\$\$;
SQL
if [[ "$(psql_su -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")" != 1 ]]; then
    log "creating database $DBNAME"
    psql_su -c "CREATE DATABASE $DBNAME OWNER $DBUSER" >&2
fi
psql_su -d "$DBNAME" -c "GRANT ALL ON SCHEMA public TO $DBUSER" >&2

URL="postgresql://$DBUSER:$DBPASS@127.0.0.1:$PORT/$DBNAME"
# Final check through TCP with the password, like the tests will connect.
PGPASSWORD="$DBPASS" "$BINDIR/psql" -X -q -h 127.0.0.1 -p "$PORT" -U "$DBUSER" -d "$DBNAME" -tA -c "SELECT 1" >/dev/null \
    || { log "cannot connect as $DBUSER over TCP"; exit 1; }
log "ready: $URL"
echo "export ANNOTATIONS_TEST_PG_URL=$URL"
echo "export ANNOT_PG_STARTED=$STARTED"  # 1: this call started the server (the caller may stop it)
