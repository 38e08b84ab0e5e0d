#!/usr/bin/env bash
# pg.sh — a throwaway PostgreSQL cluster for tests, benchmarks and the demo.
#
#   scripts/pg.sh with CMD [ARGS...]   start a cluster, run CMD with
#                                      VMPULSE_TEST_DATABASE_URL / DATABASE_URL set,
#                                      stop and delete the cluster afterwards.
#   scripts/pg.sh start DIR            start a cluster in DIR (created), print its URL
#   scripts/pg.sh stop DIR             stop the cluster in DIR and delete DIR
#   scripts/pg.sh pause|resume DIR     stop / start the server, keeping its data
#
# The server binaries come from /usr/lib/postgresql/<ver>/bin (installed with
# apt if absent). PostgreSQL refuses to run as root, so when run as root the
# cluster belongs to the unprivileged "postgres" user (created if missing).
# Nothing is installed as a service and nothing listens beyond 127.0.0.1.
set -euo pipefail

log() { printf 'pg.sh: %s\n' "$*" >&2; }

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/postgres" ] && { echo "$d"; return 0; }
  done
  return 1
}

ensure_server() {
  if ! BINDIR=$(find_bindir); then
    if [ "$(id -u)" = 0 ]; then
      log "no PostgreSQL server binaries; installing postgresql with apt"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2
      BINDIR=$(find_bindir) || { log "postgresql install failed"; exit 1; }
    else
      log "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin and not root to install them"
      exit 1
    fi
  fi
}

# as_owner runs a command as the unprivileged cluster owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$OWNER" -- "$@"
  else
    "$@"
  fi
}

pick_owner() {
  if [ "$(id -u)" = 0 ]; then
    OWNER=postgres
    id "$OWNER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$OWNER"
  else
    OWNER=$(id -un)
  fi
}

free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

start() {
  local dir=$1
  ensure_server
  pick_owner
  mkdir -p "$dir"
  chmod 0755 "$dir"
  [ "$(id -u)" = 0 ] && chown "$OWNER" "$dir"
  local port
  port=$(free_port)
  as_owner "$BINDIR/initdb" -D "$dir/data" -U vmpulse --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
wal_level = minimal
max_wal_senders = 0
max_wal_size = 2GB
checkpoint_timeout = 15min
logging_collector = off
log_min_messages = warning
CONF
  as_owner "$BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  echo "$port" >"$dir/port"
  echo "postgres://vmpulse@127.0.0.1:$port/postgres?sslmode=disable"
}

# pause/resume stop and restart the server but keep its data: tests use them
# to take the database away mid-stream.
pause() {
  ensure_server; pick_owner
  as_owner "$BINDIR/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null
}
resume() {
  ensure_server; pick_owner
  as_owner "$BINDIR/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 start >/dev/null
}

stop() {
  local dir=$1
  ensure_server
  pick_owner
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$BINDIR/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

cmd=${1:-}
shift || true
case "$cmd" in
  start) start "${1:?usage: pg.sh start DIR}" ;;
  stop) stop "${1:?usage: pg.sh stop DIR}" ;;
  pause) pause "${1:?usage: pg.sh pause DIR}" ;;
  resume) resume "${1:?usage: pg.sh resume DIR}" ;;
  with)
    [ $# -gt 0 ] || { log "usage: pg.sh with CMD [ARGS...]"; exit 2; }
    ensure_server
    dir=$(mktemp -d /tmp/vmpulse-pg.XXXXXX)
    trap 'stop "$dir"' EXIT INT TERM
    url=$(start "$dir")
    log "PostgreSQL running at $url (data in $dir)"
    export VMPULSE_TEST_DATABASE_URL=$url DATABASE_URL=$url VMPULSE_PG_DIR=$dir VMPULSE_PG_SCRIPT=$(cd "$(dirname "$0")" && pwd)/pg.sh
    set +e
    "$@"
    rc=$?
    set -e
    exit $rc
    ;;
  *) log "usage: pg.sh with CMD... | start DIR | stop DIR"; exit 2 ;;
esac
